"""What tables a database holds: columns, keys and collations, read from pg_catalog.

Shared by the schema diff and the data diff. System schemas and dbroute's own
schema (``dbroute``) are never included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from dbroute.sql import user_schema
from dbroute.validate.keys import quote_ident

__all__ = [
    "Column",
    "Table",
    "TableName",
    "load_tables",
    "schema_filter",
]

#: Schemas validation never looks at (system schemas and dbroute's own).

#: ``(schema, table)``.
TableName = tuple[str, str]


@dataclass(frozen=True)
class Column:
    """One column as the schema diff and the row hash see it."""

    name: str
    type: str
    not_null: bool
    default: str | None
    identity: str
    generated: str
    #: Effective collation (``"default:<datcollate>"`` for the database default), or None.
    collation: str | None


@dataclass(frozen=True)
class Table:
    """A table with the key validation orders and segments it by."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    #: Primary key columns in key order; else those of a unique constraint on NOT NULL columns.
    key: tuple[str, ...]
    key_kind: str | None
    #: Whether this is a partition (its rows are compared through its root table).
    is_partition: bool

    @property
    def qualified(self) -> str:
        """``"schema"."table"``."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        return next(c for c in self.columns if c.name == name)


def schema_filter(alias: str, schemas: Sequence[str] | None) -> tuple[str, dict[str, object]]:
    """A predicate on the schema-name column ``alias`` and its bind parameters."""
    sql = user_schema(alias)
    params: dict[str, object] = {}
    if schemas:
        sql += f" and {alias} = any(:schemas)"
        params["schemas"] = list(schemas)
    return sql, params


_COLUMNS = """
select n.nspname, c.relname, c.relispartition, a.attname,
       format_type(a.atttypid, a.atttypmod) as type, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid) as "default", a.attidentity, a.attgenerated,
       case when a.attcollation = 0 then null
            when co.collname = 'default' then 'default:' || db.datcollate
            else co.collname end as collation
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
left join pg_collation co on co.oid = a.attcollation
cross join (select datcollate from pg_database where datname = current_database()) db
where c.relkind in ('r', 'p') and {filter}
order by n.nspname, c.relname, a.attnum
"""

# Key candidates: the primary key first, then unique constraints (on NOT NULL columns).
_KEYS = """
select n.nspname, c.relname, k.contype,
       array_agg(a.attname order by u.ord) as columns,
       bool_and(a.attnotnull) as not_null
from pg_constraint k
join pg_class c on c.oid = k.conrelid
join pg_namespace n on n.oid = c.relnamespace
cross join lateral unnest(k.conkey) with ordinality as u(attnum, ord)
join pg_attribute a on a.attrelid = c.oid and a.attnum = u.attnum
where k.contype in ('p', 'u') and {filter}
group by n.nspname, c.relname, k.conname, k.contype
order by n.nspname, c.relname, k.contype, k.conname
"""


def load_tables(conn: Connection, schemas: Sequence[str] | None = None) -> dict[TableName, Table]:
    """Every ordinary and partitioned table of the user schemas, by ``(schema, table)``."""
    where, params = schema_filter("n.nspname", schemas)
    columns: dict[TableName, list[Column]] = {}
    partitions: set[TableName] = set()
    for row in conn.execute(text(_COLUMNS.format(filter=where)), params):
        name = (row.nspname, row.relname)
        if row.relispartition:
            partitions.add(name)
        columns.setdefault(name, []).append(
            Column(
                row.attname,
                row.type,
                row.attnotnull,
                row.default,
                row.attidentity,
                row.attgenerated,
                row.collation,
            )
        )
    keys: dict[TableName, tuple[tuple[str, ...], str | None]] = {}
    for row in conn.execute(text(_KEYS.format(filter=where)), params):
        name = (row.nspname, row.relname)
        if name in keys or not row.not_null:
            continue
        keys[name] = (tuple(row.columns), "primary key" if row.contype == "p" else "unique")
    tables = {}
    for name, cols in columns.items():
        key, key_kind = keys.get(name, ((), None))
        tables[name] = Table(name[0], name[1], tuple(cols), key, key_kind, name in partitions)
    return tables
