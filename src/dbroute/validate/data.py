"""The data diff of many tables: plan each table, run them in parallel, collect reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from dbroute.errors import ConfigurationError, ValidateError
from dbroute.target import Target
from dbroute.telemetry import (
    VALIDATE_DURATION,
    VALIDATE_ROWS,
    VALIDATE_ROWS_DIFFERING,
    validate_attributes,
)
from dbroute.validate.bisect import BisectOptions, Bisector
from dbroute.validate.catalog import Table, TableName, load_tables
from dbroute.validate.checksum import Algorithm, TableQuery
from dbroute.validate.diff import classify
from dbroute.validate.keys import KeySpec, Sql, quote_ident
from dbroute.validate.report import DataReport, TableDiff
from dbroute.validate.snapshot import open_side

__all__ = ["DataOptions", "Plan", "compare_tables", "plan_tables"]


@dataclass(frozen=True)
class DataOptions:
    """What to compare and how.

    ``tables`` are ``schema.table`` or bare table names; ``where`` is a SQL
    predicate on the table's columns (alias ``t``) applied on both servers;
    ``since`` is ``(column, value)``: only rows with ``column >= value``
    (incremental checks on an ``updated_at`` column: deleted rows and rows
    outside the window are not seen).
    """

    schemas: Sequence[str] | None = None
    tables: Sequence[str] | None = None
    where: str | None = None
    since: tuple[str, str] | None = None
    jobs: int = 4
    #: Connections per server scanning one large table's first pass together (raise it
    #: on servers with idle cores; each runs a share of the scan in the same snapshot).
    parallel: int = 1
    #: Tables estimated at least this large count as large.
    parallel_min_rows: int = 100_000
    algorithm: Algorithm = "hashtext"
    statement_timeout_ms: int = 0
    bisect: BisectOptions = field(default_factory=BisectOptions)


@dataclass(frozen=True)
class Plan:
    """One table to compare (``query``) or to report as skipped (``skipped``)."""

    schema: str
    table: str
    query: TableQuery | None
    uncompared: tuple[str, ...] = ()
    skipped: str | None = None


def plan_tables(neon: Engine, rds: Engine, options: DataOptions) -> list[Plan]:
    """Read both catalogs and decide, table by table, what to compare."""
    with neon.connect() as conn:
        ours = load_tables(conn, options.schemas)
    with rds.connect() as conn:
        theirs = load_tables(conn, options.schemas)
    names = sorted(n for n in ours.keys() | theirs.keys() if _selected(n, options.tables))
    if options.tables:
        _check_found(options.tables, names)
    plans = []
    for name in names:
        a, b = ours.get(name), theirs.get(name)
        if (a is not None and a.is_partition) or (b is not None and b.is_partition):
            continue  # compared through its partitioned root table
        plans.append(_plan(name, a, b, options))
    return plans


def _selected(name: TableName, tables: Sequence[str] | None) -> bool:
    if not tables:
        return True
    return any(t in (name[1], f"{name[0]}.{name[1]}") for t in tables)


def _check_found(tables: Sequence[str], names: list[TableName]) -> None:
    missing = [t for t in tables if not any(_selected(n, [t]) for n in names)]
    if missing:
        raise ConfigurationError(
            f"no table named {', '.join(missing)} on either database "
            "(use schema.table, or check --schema)"
        )


def _plan(name: TableName, neon: Table | None, rds: Table | None, options: DataOptions) -> Plan:
    if neon is None or rds is None:
        return Plan(*name, None, skipped=f"missing on {'neon' if neon is None else 'rds'}")
    if not neon.key:
        return Plan(*name, None, skipped="no primary key (or unique key on NOT NULL columns)")
    if neon.key != rds.key:
        return Plan(*name, None, skipped=f"keys differ: neon {neon.key}, rds {rds.key or 'none'}")
    common = {c.name for c in rds.columns}
    columns = tuple(c.name for c in neon.columns if c.name in common)
    uncompared = tuple(sorted({c.name for c in neon.columns} ^ common))
    key = KeySpec(
        neon.key,
        tuple(neon.column(c).type for c in neon.key),
        tuple(
            neon.column(c).collation is not None
            and neon.column(c).collation != rds.column(c).collation
            for c in neon.key
        ),
    )
    query = TableQuery(neon.qualified, key, columns, _filter(neon, options), options.algorithm)
    return Plan(*name, query, uncompared)


def _filter(table: Table, options: DataOptions) -> Sql:
    sql = Sql()
    if options.where:
        # The filter is the operator's own SQL; %-signs are literal, not placeholders.
        sql.add(f"({options.where.replace('%', '%%')})")
    if options.since:
        column, value = options.since
        if column not in {c.name for c in table.columns}:
            raise ConfigurationError(
                f"--since column {column!r} is not a column of {table.qualified}"
            )
        type_ = table.column(column).type
        sql.add(" and " if sql.text else "").add(
            f"t.{quote_ident(column)} >= %s::text::{type_}", value
        )
    return sql


def compare_tables(
    neon: Engine,
    rds: Engine,
    plans: Sequence[Plan],
    options: DataOptions,
    progress: Callable[[TableDiff], None] | None = None,
) -> DataReport:
    """Compare the planned tables, ``options.jobs`` at a time (one connection per server each)."""
    results: list[TableDiff] = []

    def one(plan: Plan) -> TableDiff:
        result = _compare_one(neon, rds, plan, options)
        if progress is not None:
            progress(result)
        return result

    with ThreadPoolExecutor(max(1, options.jobs), thread_name_prefix="dbroute-validate") as pool:
        results = list(pool.map(one, plans))
    return DataReport(results)


def _compare_one(neon: Engine, rds: Engine, plan: Plan, options: DataOptions) -> TableDiff:
    try:
        return _compare_table(neon, rds, plan, options)
    except DBAPIError as exc:
        # The server's message (permission denied, bad --where...) names no password.
        raise ValidateError(
            f"comparing {plan.schema}.{plan.table} failed: {str(exc.orig).strip()}"
        ) from exc


def _compare_table(neon: Engine, rds: Engine, plan: Plan, options: DataOptions) -> TableDiff:
    result = TableDiff(plan.schema, plan.table, uncompared_columns=plan.uncompared)
    if plan.query is None:
        result.skipped = plan.skipped
        return result
    query = plan.query
    result.key_columns = query.key.columns
    started = time.perf_counter()
    timeout = options.statement_timeout_ms
    estimates = _estimate(neon, query), _estimate(rds, query)
    helpers = options.parallel - 1 if max(estimates) >= options.parallel_min_rows else 0
    with (
        open_side(neon, Target.NEON, statement_timeout_ms=timeout, helpers=helpers) as ours,
        open_side(rds, Target.RDS, statement_timeout_ms=timeout, helpers=helpers) as theirs,
        ThreadPoolExecutor(1, thread_name_prefix="dbroute-validate-rds") as helper,
        ThreadPoolExecutor(2 * (helpers + 1), thread_name_prefix="dbroute-validate") as pool,
    ):
        bisector = Bisector(query, ours, theirs, options.bisect, helper, pool)
        raw = bisector.run(*estimates)
        classify(query, ours, theirs, raw, result)
    result.seconds = time.perf_counter() - started
    attributes = validate_attributes(result.name)
    VALIDATE_DURATION.record(result.seconds, attributes)
    VALIDATE_ROWS.add(result.rows_neon + result.rows_rds, attributes)
    VALIDATE_ROWS_DIFFERING.add(result.differences, attributes)
    return result


def _estimate(engine: Engine, query: TableQuery) -> int:
    """The planner's row count; an exact count when the table was never analyzed."""
    with engine.connect() as conn:
        estimate = int(
            conn.exec_driver_sql(
                "select reltuples::bigint from pg_class where oid = %s::regclass",
                (query.qualified,),
            ).scalar_one()
        )
        if estimate < 0:  # never vacuumed nor analyzed: count rather than guess
            estimate = int(
                conn.exec_driver_sql(f"select count(*) from {query.qualified}").scalar_one()
            )
    return estimate
