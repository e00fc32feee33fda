"""Quoting for SQL that dbroute writes itself (identifiers and constant literals).

Values from users always travel as bind parameters; these helpers only quote
catalog names (tables, columns, sequences) and dbroute's own constants.
"""

from __future__ import annotations

__all__ = ["ident", "literal", "sequences_sql", "user_schema"]


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


def sequences_sql(where: str) -> str:
    """Every sequence that ``where`` (a condition on ``s.schemaname``...) admits, in name order.

    Columns: ``schemaname``, ``sequencename``, ``last_value``, ``start_value``,
    ``increment_by``, ``min_value``, ``max_value`` (from ``pg_sequences``), then
    the column that owns the sequence (``serial`` or identity), all NULL when
    none does: ``table_schema``, ``table_name``, ``column_name``, ``column_type``.
    """
    return f"""
    select s.schemaname, s.sequencename, s.last_value, s.start_value, s.increment_by,
           s.min_value, s.max_value, tn.nspname as table_schema, t.relname as table_name,
           a.attname as column_name, a.atttypid::regtype::text as column_type
    from pg_sequences s
    join pg_namespace sn on sn.nspname = s.schemaname
    join pg_class sc on sc.relnamespace = sn.oid and sc.relname = s.sequencename
    left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = sc.oid
         and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
    left join pg_class t on t.oid = d.refobjid
    left join pg_namespace tn on tn.oid = t.relnamespace
    left join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
    where {where}
    order by 1, 2
    """
