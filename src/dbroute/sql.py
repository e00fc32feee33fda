"""Quoting for SQL that dbroute writes itself (identifiers and constant literals).

Values from users always travel as bind parameters; these helpers only quote
catalog names (tables, columns, sequences) and dbroute's own constants.
"""

from __future__ import annotations

__all__ = ["ident", "literal", "user_schema"]


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """``value`` as a quoted SQL string literal (standard_conforming_strings)."""
    return "'" + value.replace("'", "''") + "'"


def user_schema(column: str) -> str:
    """SQL condition: the schema named by ``column`` holds user tables.

    Not dbroute's own schema, not ``information_schema``, and not a system
    schema: PostgreSQL reserves the ``pg_`` prefix for those (``pg_catalog``,
    ``pg_toast``, ``pg_temp_N``...). Every feature that walks the catalog
    (dual-write setup, validation, assessment, phase checks) uses this one rule.
    """
    return f"({column} not in ('dbroute', 'information_schema') and {column} not like 'pg\\_%')"
