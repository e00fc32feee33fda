"""Quoting for SQL that dbroute writes itself (identifiers and constant literals).

Values from users always travel as bind parameters; these helpers only quote
catalog names (tables, columns, sequences) and dbroute's own constants.
"""

from __future__ import annotations

__all__ = ["ident", "literal"]


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """``value`` as a quoted SQL string literal (standard_conforming_strings)."""
    return "'" + value.replace("'", "''") + "'"
