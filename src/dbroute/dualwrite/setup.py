"""``dbroute setup`` / ``dbroute teardown``: prepare both databases for dual-write.

Setup is idempotent and runs in one transaction per database: it creates the
``dbroute`` schema, the journal, the functions and, on every user table with a
primary key, the capture triggers. Run it before enabling dual-write and again
after every schema migration (new tables, changed keys).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import Connection, Engine, text

from dbroute.dualwrite.capture import CapturedTable, drop_triggers_sql, install_triggers_sql
from dbroute.dualwrite.journal import JOURNAL_DDL, SCHEMA, backlog, journal_exists
from dbroute.errors import DualWriteSetupError
from dbroute.target import Target

__all__ = ["SetupReport", "discover", "setup", "teardown"]

log = logging.getLogger("dbroute.dualwrite")

#: Schemas never captured: dbroute's own and PostgreSQL's.
SKIPPED_SCHEMAS = ("dbroute", "pg_catalog", "information_schema", "pg_toast")

_TABLES = f"""
select n.nspname as schema, c.relname as name, c.oid,
       (select array_agg(a.attname::text order by k.i)
          from unnest(i.indkey) with ordinality k(attnum, i)
          join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum) as pk_columns,
       (select array_agg(format_type(a.atttypid, a.atttypmod) order by k.i)
          from unnest(i.indkey) with ordinality k(attnum, i)
          join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum) as pk_types
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join pg_index i on i.indrelid = c.oid and i.indisprimary
where c.relkind in ('r', 'p') and not c.relispartition
  and n.nspname not in {SKIPPED_SCHEMAS!r} and n.nspname not like 'pg\\_%'
order by 1, 2
"""

_TEARDOWN = """
drop function if exists dbroute.capture() cascade;
drop function if exists dbroute.refuse_truncate() cascade;
drop function if exists dbroute.apply(jsonb, xid8, boolean);
drop function if exists dbroute.collect();
drop function if exists dbroute.images(jsonb);
drop function if exists dbroute.rejournal(jsonb, text, jsonb);
drop function if exists dbroute.key_condition(text[], text[]);
drop table if exists dbroute.tables;
drop table if exists dbroute.journal;
"""

_FOREIGN_KEYS = """
select conrelid as child, confrelid as parent from pg_constraint
where contype = 'f' and conrelid <> confrelid
"""


@dataclass(frozen=True, slots=True)
class SetupReport:
    """What setup did on one database."""

    target: Target
    captured: tuple[CapturedTable, ...]
    excluded: tuple[str, ...]


def _excluded(schema: str, name: str, exclude: frozenset[str]) -> bool:
    return name in exclude or f"{schema}.{name}" in exclude


def discover(
    connection: Connection, exclude: Iterable[str] = ()
) -> tuple[list[CapturedTable], list[str], list[str]]:
    """User tables as ``(captured, excluded, without_primary_key)``, parents first.

    ``exclude`` names tables as ``table`` (any schema) or ``schema.table``.
    """
    skip = frozenset(exclude)
    captured: dict[int, CapturedTable] = {}
    excluded: list[str] = []
    no_pk: list[str] = []
    for row in connection.execute(text(_TABLES)):
        qualified = f"{row.schema}.{row.name}"
        if _excluded(row.schema, row.name, skip):
            excluded.append(qualified)
        elif row.pk_columns is None:
            no_pk.append(qualified)
        else:
            captured[row.oid] = CapturedTable(
                row.schema, row.name, tuple(row.pk_columns), tuple(row.pk_types)
            )
    edges = [(r.child, r.parent) for r in connection.execute(text(_FOREIGN_KEYS))]
    return _parents_first(captured, edges), excluded, no_pk


def _parents_first(tables: Mapping[int, CapturedTable], edges: list[tuple[int, int]]) -> list[CapturedTable]:
    # Depth in the foreign-key graph; a cycle (rare) keeps whatever depth it reached.
    depth = dict.fromkeys(tables, 0)
    for _ in range(len(tables)):
        changed = False
        for child, parent in edges:
            if child in depth and parent in depth and depth[child] <= depth[parent]:
                depth[child] = depth[parent] + 1
                changed = True
        if not changed:
            break
    return [tables[oid] for oid in sorted(tables, key=lambda oid: (depth[oid], str(tables[oid])))]


def _install(connection: Connection, tables: list[CapturedTable]) -> None:
    connection.execute(text(f"create schema if not exists {SCHEMA}"))
    connection.exec_driver_sql(JOURNAL_DDL)
    functions = resources.files("dbroute.dualwrite").joinpath("functions.sql").read_text()
    connection.exec_driver_sql(functions)
    previous = [
        CapturedTable(r.table_schema, r.table_name, tuple(r.pk_columns), tuple(r.pk_types))
        for r in connection.execute(text(f"select * from {SCHEMA}.tables"))
    ]
    wanted = {str(t) for t in tables}
    for old in previous:
        exists = connection.execute(text("select to_regclass(:t)"), {"t": old.qualified}).scalar()
        if str(old) not in wanted and exists is not None:
            for statement in drop_triggers_sql(old):
                connection.exec_driver_sql(statement)
    connection.execute(text(f"delete from {SCHEMA}.tables"))
    for order, table in enumerate(tables):
        connection.execute(
            text(f"insert into {SCHEMA}.tables values (:s, :n, :c, :t, :o)"),
            {"s": table.schema, "n": table.name, "c": list(table.pk_columns),
             "t": list(table.pk_types), "o": order},
        )
        for statement in install_triggers_sql(table):
            connection.exec_driver_sql(statement)


def setup(engines: Mapping[Target, Engine], exclude: Iterable[str] = ()) -> list[SetupReport]:
    """Prepare both databases for dual-write; idempotent.

    Raises :class:`~dbroute.errors.DualWriteSetupError` naming the tables that
    have no primary key (unless excluded) or that exist on one database only,
    before changing anything.
    """
    exclude = frozenset(exclude)
    found: dict[Target, tuple[list[CapturedTable], list[str]]] = {}
    for target, engine in engines.items():
        with engine.connect() as connection:
            tables, excluded, no_pk = discover(connection, exclude)
        if no_pk:
            raise DualWriteSetupError(
                f"{target.value}: tables without a primary key cannot be mirrored: "
                f"{', '.join(no_pk)}; add a primary key or pass --exclude for each"
            )
        found[target] = (tables, excluded)
    shapes = {t: {(str(c), c.pk_columns) for c in found[t][0]} for t in found}
    if len(shapes) == 2:
        neon, rds = shapes[Target.NEON], shapes[Target.RDS]
        if neon != rds:
            differ = sorted({name for name, _ in neon ^ rds})
            raise DualWriteSetupError(
                "the databases differ in these tables or their primary keys: "
                f"{', '.join(differ)}; run the same migrations on both, then setup again"
            )
    reports = []
    for target, engine in engines.items():
        tables, excluded = found[target]
        with engine.begin() as connection:
            _install(connection, tables)
        log.info("dual-write set up on %s: %d tables captured", target.value, len(tables))
        reports.append(SetupReport(target, tuple(tables), tuple(excluded)))
    return reports


def teardown(engines: Mapping[Target, Engine], *, force: bool = False) -> None:
    """Remove every trigger, function and table setup installed, on both databases.

    Refuses while a journal still holds entries (they are writes not yet on
    the other database) unless ``force``.
    """
    for target, engine in engines.items():
        with engine.connect() as connection:
            waiting = backlog(connection)
        if waiting and not force:
            raise DualWriteSetupError(
                f"{target.value}: the journal still holds {waiting} entries; run "
                "`dbroute replay` first, or teardown --force to discard them"
            )
    for engine in engines.values():
        with engine.begin() as connection:
            if not journal_exists(connection):
                continue
            # cascade drops the triggers that call these functions; the schema
            # itself stays, other dbroute features keep their objects there.
            connection.exec_driver_sql(_TEARDOWN)
