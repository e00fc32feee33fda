"""Schema diff: what a migration's restore or DDL replay left different.

Compares, per user schema: tables, columns (type, nullability, default,
identity, generation), primary keys, unique and other constraints, indexes,
sequences (definition, not position: see :mod:`dbroute.validate.sequences`),
and the installed extensions with their versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text

from dbroute.validate.catalog import Column, Table, TableName, load_tables, schema_filter
from dbroute.validate.report import SchemaDifference, SchemaReport

__all__ = ["diff_schemas"]

#: ``(schema, object name) -> description`` of one kind of object on one server.
Objects = dict[tuple[str, str], str]

_CONSTRAINTS = """
select n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) as def
from pg_constraint k
join pg_class c on c.oid = k.conrelid
join pg_namespace n on n.oid = c.relnamespace
where {filter}
"""

_INDEXES = """
select schemaname, indexname, indexdef from pg_indexes n where {filter}
"""

_SEQUENCES = """
select schemaname, sequencename,
       format('%s start %s increment %s min %s max %s cache %s%s', data_type, start_value,
              increment_by, min_value, max_value, cache_size,
              case when cycle then ' cycle' else '' end) as def
from pg_sequences n where {filter}
"""

_EXTENSIONS = """
select n.nspname, e.extname, e.extversion
from pg_extension e join pg_namespace n on n.oid = e.extnamespace
"""

_COLUMN_ATTRIBUTES = ("type", "not_null", "default", "identity", "generated", "collation")


def diff_schemas(neon: Engine, rds: Engine, schemas: Sequence[str] | None = None) -> SchemaReport:
    """Every schema difference between the two databases, sorted by kind and name."""
    with neon.connect() as a, rds.connect() as b:
        differences = [
            *_diff_tables(load_tables(a, schemas), load_tables(b, schemas)),
            *_diff("constraint", _constraints(a, schemas), _constraints(b, schemas)),
            *_diff(
                "index",
                _objects(a, _INDEXES, "schemaname", schemas),
                _objects(b, _INDEXES, "schemaname", schemas),
            ),
            *_diff(
                "sequence",
                _objects(a, _SEQUENCES, "schemaname", schemas),
                _objects(b, _SEQUENCES, "schemaname", schemas),
            ),
            *_diff("extension", _extensions(a), _extensions(b)),
        ]
    return SchemaReport(sorted(differences, key=lambda d: (d.kind, d.schema, d.object)))


def _diff(kind: str, neon: Objects, rds: Objects) -> list[SchemaDifference]:
    found = []
    for name in sorted(neon.keys() | rds.keys()):
        ours, theirs = neon.get(name), rds.get(name)
        if ours == theirs:
            continue
        detail = _only_on(kind, ours, theirs) or f"{kind} differs"
        found.append(SchemaDifference(kind, name[0], name[1], detail, ours, theirs))
    return found


def _only_on(kind: str, neon: object | None, rds: object | None) -> str | None:
    """``"<kind> only on <side>"`` when the object is missing on one side, else None."""
    if neon is None:
        return f"{kind} only on rds"
    if rds is None:
        return f"{kind} only on neon"
    return None


def _diff_tables(
    neon: dict[TableName, Table], rds: dict[TableName, Table]
) -> list[SchemaDifference]:
    found = _diff(
        "table",
        {name: "table" for name in neon},
        {name: "table" for name in rds},
    )
    for name in sorted(neon.keys() & rds.keys()):
        ours = {c.name: c for c in neon[name].columns}
        theirs = {c.name: c for c in rds[name].columns}
        for column in sorted(ours.keys() | theirs.keys()):
            a, b = ours.get(column), theirs.get(column)
            if a == b:
                continue
            changed = [f for f in _COLUMN_ATTRIBUTES if getattr(a, f, 0) != getattr(b, f, 0)]
            detail = _only_on("column", a, b) or "column differs: " + ", ".join(changed)
            found.append(
                SchemaDifference(
                    "column", name[0], f"{name[1]}.{column}", detail, _describe(a), _describe(b)
                )
            )
    return found


def _describe(column: Column | None) -> str | None:
    if column is None:
        return None
    parts = [column.type, "not null" if column.not_null else "null"]
    if column.default is not None:
        parts.append(f"default {column.default}")
    if column.identity:
        parts.append(
            "identity " + {"a": "always", "d": "by default"}.get(column.identity, column.identity)
        )
    if column.generated:
        parts.append("generated")
    if column.collation is not None:
        parts.append(f"collate {column.collation}")
    return " ".join(parts)


def _objects(conn: Connection, query: str, column: str, schemas: Sequence[str] | None) -> Objects:
    where, params = schema_filter(f"n.{column}", schemas)
    rows = conn.execute(text(query.format(filter=where)), params).all()
    return {(row[0], row[1]): row[2] for row in rows}


def _constraints(conn: Connection, schemas: Sequence[str] | None) -> Objects:
    where, params = schema_filter("n.nspname", schemas)
    found: Objects = {}
    for row in conn.execute(text(_CONSTRAINTS.format(filter=where)), params):
        # Primary keys are compared by table (their name is incidental), the rest by name.
        name = "primary key" if row.contype == "p" else row.conname
        found[(row.nspname, f"{row.relname}.{name}")] = row[4]
    return found


def _extensions(conn: Connection) -> Objects:
    rows: list[Any] = list(conn.execute(text(_EXTENSIONS)).all())
    return {("", row.extname): f"{row.extname} {row.extversion} in {row.nspname}" for row in rows}
