"""``dbroute setup`` / ``dbroute teardown``: prepare both databases for dual-write.

Setup is idempotent and runs in one transaction per database: it creates the
``dbroute`` schema, the journal and intents tables, the functions and, on every
user table with a primary key, the capture triggers. Run it before enabling dual-write and again
after every schema migration (new tables, changed keys).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import Connection, Engine, text

from dbroute.dualwrite.capture import CapturedTable, install_triggers_sql
from dbroute.dualwrite.codegen import dispatchers_sql, table_functions_sql
from dbroute.dualwrite.journal import (
    ADOPT_INTENTS,
    JOURNAL_DDL,
    SCHEMA,
    backlog,
    journal_exists,
)
from dbroute.errors import DualWriteSetupError
from dbroute.sql import user_schema
from dbroute.target import Target

__all__ = ["SetupReport", "discover", "setup", "teardown"]

log = logging.getLogger("dbroute.dualwrite")

# Tables of user schemas only (dbroute.sql.user_schema): never dbroute's own or PostgreSQL's.
_TABLES = f"""
select n.nspname as schema, c.relname as name, c.oid,
       (select array_agg(a.attname::text order by k.i)
          from unnest(i.indkey) with ordinality k(attnum, i)
          join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum) as pk_columns,
       (select array_agg(format_type(a.atttypid, a.atttypmod) order by k.i)
          from unnest(i.indkey) with ordinality k(attnum, i)
          join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum) as pk_types,
       (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
           and a.attgenerated = '') as columns,
       (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as all_columns
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join pg_index i on i.indrelid = c.oid and i.indisprimary
where c.relkind in ('r', 'p') and not c.relispartition
  and {user_schema("n.nspname")}
order by 1, 2
"""

# Everything setup generated or installed, found in the catalog (not in
# dbroute.tables, which may be stale): triggers first, then functions.
_INSTALLED_TRIGGERS = """
select format('drop trigger %I on %s', t.tgname, t.tgrelid::regclass) from pg_trigger t
where (t.tgname like 'dbroute\\_capture\\_%' or t.tgname = 'dbroute_truncate')
  and not t.tgisinternal
"""
_GENERATED_FUNCTIONS = """
select format('drop function %s', p.oid::regprocedure) from pg_proc p
where p.pronamespace = to_regnamespace('dbroute') and p.proname like 'dw\\_%'
"""
_TEARDOWN = """
drop function if exists dbroute.refuse_truncate();
drop function if exists dbroute.apply(jsonb, xid8, boolean, boolean);
drop function if exists dbroute.apply(jsonb, xid8, boolean, xid8[], boolean);
drop function if exists dbroute.confirm(xid8[]);
drop function if exists dbroute.collect();
drop function if exists dbroute.collect(integer);
drop function if exists dbroute.collect_checked(integer);
drop function if exists dbroute.images(jsonb);
drop function if exists dbroute.rejournal(jsonb, text, jsonb);
drop table if exists dbroute.tables;
drop view if exists dbroute.entries;
drop table if exists dbroute.intents;
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
                row.schema,
                row.name,
                tuple(row.pk_columns),
                tuple(row.pk_types),
                tuple(row.columns or ()),
                tuple(row.all_columns),
            )
    edges = [(r.child, r.parent) for r in connection.execute(text(_FOREIGN_KEYS))]
    return _parents_first(captured, edges), excluded, no_pk


def _parents_first(
    tables: Mapping[int, CapturedTable], edges: list[tuple[int, int]]
) -> list[CapturedTable]:
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


def _drop_generated(connection: Connection) -> None:
    for query in (_INSTALLED_TRIGGERS, _GENERATED_FUNCTIONS):
        for statement in connection.execute(text(query)).scalars().all():
            connection.exec_driver_sql(statement)


def _install(connection: Connection, tables: list[CapturedTable]) -> None:
    connection.execute(text(f"create schema if not exists {SCHEMA}"))
    connection.exec_driver_sql(JOURNAL_DDL)
    # Straight to the driver, without parameters: the SQL's format() uses %I and %s.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(resources.files("dbroute.dualwrite").joinpath("functions.sql").read_text())
    _drop_generated(connection)
    connection.execute(text(f"delete from {SCHEMA}.tables"))
    for n, table in enumerate(tables):
        connection.execute(
            text(f"insert into {SCHEMA}.tables values (:s, :n, :c, :t, :o)"),
            {
                "s": table.schema,
                "n": table.name,
                "c": list(table.pk_columns),
                "t": list(table.pk_types),
                "o": n,
            },
        )
        driver.execute(table_functions_sql(table, n))
        for statement in install_triggers_sql(table, n):
            connection.exec_driver_sql(statement)
    driver.execute(dispatchers_sql(tables))
    connection.exec_driver_sql(ADOPT_INTENTS)


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
    shapes = {
        t: {(str(c), c.pk_columns, frozenset(c.all_columns)) for c in found[t][0]} for t in found
    }
    if len(shapes) == 2:
        neon, rds = shapes[Target.NEON], shapes[Target.RDS]
        if neon != rds:
            differ = sorted({name for name, _, _ in neon ^ rds})
            raise DualWriteSetupError(
                "the databases differ in these tables, their columns or primary keys: "
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
            # The schema itself stays: other dbroute features keep objects there.
            _drop_generated(connection)
            connection.exec_driver_sql(_TEARDOWN)
