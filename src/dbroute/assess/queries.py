"""The assessment's catalog queries, one function per check, on one connection.

Every query skips the system schemas and dbroute's own ``dbroute`` schema.
The vocabulary follows PgHero (unused/duplicate/invalid indexes, hit rate)
and pg-index-health (tables without a primary key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from dbroute.assess.indexes import IndexDef
from dbroute.sql import user_schema

__all__ = [
    "COMPARED_SETTINGS",
    "IndexUsage",
    "Statement",
    "TableSize",
    "cache_hit_rate",
    "connection_usage",
    "database_size",
    "extensions",
    "index_usage",
    "invalid_indexes",
    "settings",
    "tables",
    "tables_without_primary_key",
    "top_statements",
    "unused_indexes",
]

#: Condition on ``n.nspname`` (every query's pg_namespace alias) keeping user schemas only.
_USER_SCHEMA = user_schema("n.nspname")

#: Settings whose difference between the servers matters to the application.
COMPARED_SETTINGS = (
    "server_version_num",
    "server_encoding",
    "lc_collate",
    "lc_ctype",
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "standard_conforming_strings",
    "default_transaction_isolation",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "max_connections",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "random_page_cost",
    "max_parallel_workers_per_gather",
    "jit",
    "wal_level",
    "max_wal_size",
    "shared_preload_libraries",
    "track_io_timing",
    "default_text_search_config",
)


@dataclass(frozen=True, slots=True)
class TableSize:
    """Size and activity of one table."""

    table: str
    total_bytes: int
    table_bytes: int
    index_bytes: int
    row_estimate: int
    seq_scans: int
    index_scans: int


@dataclass(frozen=True, slots=True)
class IndexUsage:
    """One index, its size and how often it was used since the statistics reset."""

    definition: IndexDef
    bytes: int
    scans: int
    primary: bool
    valid: bool
    #: Backs a constraint (primary key, unique, exclusion): cannot simply be dropped.
    constraint: bool


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of pg_stat_statements."""

    query: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int


def database_size(conn: Connection) -> int:
    """Bytes of the connected database."""
    return int(conn.execute(text("select pg_database_size(current_database())")).scalar_one())


def tables(conn: Connection) -> list[TableSize]:
    """Every user table, largest first."""
    rows = conn.execute(
        text(
            f"""
            select format('%I.%I', n.nspname, c.relname) as name,
                   pg_total_relation_size(c.oid) as total, pg_relation_size(c.oid) as heap,
                   pg_indexes_size(c.oid) as idx,
                   greatest(coalesce(s.n_live_tup, 0), c.reltuples::bigint, 0) as estimate,
                   coalesce(s.seq_scan, 0) as seq, coalesce(s.idx_scan, 0) as idx_scan
            from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            left join pg_stat_user_tables s on s.relid = c.oid
            where c.relkind in ('r', 'p') and {_USER_SCHEMA}
            order by total desc, name
            """
        )
    ).all()
    return [TableSize(r.name, r.total, r.heap, r.idx, r.estimate, r.seq, r.idx_scan) for r in rows]


def index_usage(conn: Connection) -> list[IndexUsage]:
    """Every index of user tables with its definition, size and scans."""
    rows = conn.execute(
        text(
            f"""
            select format('%I.%I', n.nspname, t.relname) as table_name, ic.relname as name,
                   am.amname as method, i.indisunique as is_unique, i.indisprimary as is_primary,
                   i.indisvalid as is_valid,
                   coalesce(pg_get_expr(i.indpred, i.indrelid), '') as predicate,
                   array(select pg_get_indexdef(i.indexrelid, k, true)
                         from generate_series(1, i.indnkeyatts) k order by k) as columns,
                   array(select pg_get_indexdef(i.indexrelid, k, true)
                         from generate_series(i.indnkeyatts + 1, i.indnatts) k order by k)
                       as include,
                   pg_relation_size(i.indexrelid) as bytes,
                   coalesce(s.idx_scan, 0) as scans,
                   exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)
                       as is_constraint
            from pg_index i
            join pg_class ic on ic.oid = i.indexrelid
            join pg_class t on t.oid = i.indrelid
            join pg_namespace n on n.oid = t.relnamespace
            join pg_am am on am.oid = ic.relam
            left join pg_stat_user_indexes s on s.indexrelid = i.indexrelid
            where {_USER_SCHEMA}
            order by 1, 2
            """
        )
    ).all()
    return [
        IndexUsage(
            IndexDef(
                r.table_name,
                r.name,
                tuple(r.columns),
                r.method,
                r.is_unique,
                r.predicate,
                tuple(r.include),
            ),
            int(r.bytes),
            int(r.scans),
            r.is_primary,
            r.is_valid,
            r.is_constraint,
        )
        for r in rows
    ]


def unused_indexes(usage: list[IndexUsage]) -> list[IndexUsage]:
    """Indexes never scanned since the statistics reset that back no constraint (PgHero)."""
    return [u for u in usage if u.scans == 0 and not u.constraint and not u.definition.unique]


def invalid_indexes(usage: list[IndexUsage]) -> list[IndexUsage]:
    """Indexes left invalid by a failed ``CREATE INDEX CONCURRENTLY``: maintained, never used."""
    return [u for u in usage if not u.valid]


def tables_without_primary_key(conn: Connection) -> list[str]:
    """User tables with no primary key: dual-write and validation cannot handle them."""
    rows = conn.execute(
        text(
            f"""
            select format('%I.%I', n.nspname, c.relname)
            from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p') and not c.relispartition
              and {_USER_SCHEMA}
              and not exists (select 1 from pg_constraint k
                              where k.conrelid = c.oid and k.contype = 'p')
            order by 1
            """
        )
    ).scalars()
    return list(rows)


def extensions(conn: Connection) -> dict[str, str]:
    """Installed extensions and their versions."""
    rows = conn.execute(text("select extname, extversion from pg_extension order by 1")).all()
    return {r.extname: r.extversion for r in rows}


def settings(conn: Connection, names: tuple[str, ...] = COMPARED_SETTINGS) -> dict[str, str]:
    """The values (with units) of ``names``, as ``SHOW`` would print them."""
    rows = conn.execute(
        text("select name, current_setting(name) as value from pg_settings where name = any(:n)"),
        {"n": list(names)},
    ).all()
    return {r.name: r.value for r in rows}


def connection_usage(conn: Connection) -> dict[str, Any]:
    """Client connections by state, against ``max_connections``."""
    rows = conn.execute(
        text(
            "select coalesce(state, 'unknown') as state, count(*) as n from pg_stat_activity "
            "where backend_type = 'client backend' group by 1 order by 1"
        )
    ).all()
    limits = conn.execute(
        text(
            "select current_setting('max_connections')::int as max, "
            "current_setting('superuser_reserved_connections')::int as reserved"
        )
    ).one()
    by_state = {r.state: int(r.n) for r in rows}
    return {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "max_connections": limits.max,
        "superuser_reserved": limits.reserved,
    }


def cache_hit_rate(conn: Connection) -> float | None:
    """Share of table block reads served from shared buffers (PgHero's hit rate)."""
    value = conn.execute(
        text(
            "select sum(heap_blks_hit)::float / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0)"
            " from pg_statio_user_tables"
        )
    ).scalar_one()
    return None if value is None else round(float(value), 4)


def top_statements(conn: Connection, limit: int = 10) -> list[Statement] | str:
    """The statements with the most total time, or why they are not available."""
    installed = conn.execute(
        text("select 1 from pg_extension where extname = 'pg_stat_statements'")
    ).first()
    if installed is None:
        return "pg_stat_statements is not installed (create extension pg_stat_statements)"
    try:
        with conn.begin_nested():
            rows = conn.execute(
                text(
                    """
                    select query, calls, total_exec_time, mean_exec_time, rows
                    from pg_stat_statements
                    where dbid = (select oid from pg_database where datname = current_database())
                    order by total_exec_time desc
                    limit :limit
                    """
                ),
                {"limit": limit},
            ).all()
    except SQLAlchemyError as exc:
        # Installed but not in shared_preload_libraries: the view raises.
        return f"pg_stat_statements unavailable: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
    return [
        Statement(
            " ".join(r.query.split()),
            int(r.calls),
            round(float(r.total_exec_time), 3),
            round(float(r.mean_exec_time), 3),
            int(r.rows),
        )
        for r in rows
    ]
