"""dbroute assess on a prepared database finds what was planted, and nothing else."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url, text

from dbroute.assess import assess
from dbroute.assess.queries import top_statements
from dbroute.cli import main
from dbroute.phases.health import admin_engine
from dbroute.target import Target
from dbroute.testing import DatabasePair

# users_email is scanned but is a prefix of users_email_name (duplicate); users_name
# is never scanned (unused) and users_name_dup is its identical twin (duplicate);
# events has no primary key; orders_user is scanned, so it is not unused. The unique
# index on email is created later and fails: invalid.
SCHEMA = [
    "create table users (id bigint primary key, email text not null, name text)",
    "create index users_email on users (email)",
    "create index users_email_name on users (email, name)",
    "create index users_name on users (name)",
    "create index users_name_dup on users (name)",
    "create table events (user_id bigint, payload text)",
    "create table orders (id bigint primary key, user_id bigint)",
    "create index orders_user on orders (user_id)",
    "insert into users select n, 'u' || n || '@x', 'n' || n from generate_series(1, 200) n",
    "insert into users values (201, 'dup@x', 'a'), (202, 'dup@x', 'b')",
]


@pytest.fixture
def engines(dbroute_databases: DatabasePair) -> Iterator[dict[Target, object]]:
    made = {
        Target.NEON: admin_engine(make_url(dbroute_databases.neon_url)),
        Target.RDS: admin_engine(make_url(dbroute_databases.rds_url)),
    }
    yield made
    for engine in made.values():
        engine.dispose()


def prepare(engines) -> None:
    with engines[Target.NEON].begin() as conn:
        for statement in SCHEMA:
            conn.execute(text(statement))
        conn.execute(text("analyze"))
        db = conn.execute(text("select current_database()")).scalar_one()
        conn.execute(text(f"alter database \"{db}\" set work_mem = '7MB'"))
        conn.execute(text("create extension if not exists pg_trgm"))
    # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
    with engines[Target.NEON].connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute(
                text("create unique index concurrently users_email_unique on users (email)")
            )
        conn.execute(text("set enable_seqscan = off"))
        conn.execute(text("select * from orders where user_id = 1"))  # scans orders_user
    wait_for_index_scan(engines[Target.NEON], "orders_user")


def wait_for_index_scan(engine, index: str) -> None:
    """Statistics reach pg_stat_* asynchronously (at the latest when the backend exits)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            conn.execute(text("select pg_stat_clear_snapshot()"))
            scans = conn.execute(
                text("select idx_scan from pg_stat_user_indexes where indexrelname = :i"),
                {"i": index},
            ).scalar_one()
        if scans:
            return
        time.sleep(0.2)
    raise AssertionError(f"{index} scan never showed up in pg_stat_user_indexes")


def test_assess_finds_the_planted_problems(engines):
    prepare(engines)
    report = assess(engines, Target.NEON)
    indexes = {u.definition.name: u for u in report.indexes}
    assert {"users_pkey", "users_email", "users_name", "users_name_dup"} <= indexes.keys()
    duplicates = {d.index.name: d.covered_by.name for d in report.duplicate_indexes}
    assert duplicates == {"users_email": "users_email_name", "users_name_dup": "users_name"}
    unused = {u.definition.name for u in report.unused_indexes}
    assert {"users_name", "users_name_dup"} <= unused
    assert "users_pkey" not in unused
    assert "users_email_unique" not in unused
    assert "orders_user" not in unused
    assert indexes["orders_user"].scans >= 1
    assert [u.definition.name for u in report.invalid_indexes] == ["users_email_unique"]
    assert report.tables_without_primary_key == ["public.events"]
    assert {i.definition.name for i in report.indexes} >= {"orders_pkey", "orders_user"}
    tables = {t.table: t for t in report.tables}
    assert tables["public.users"].row_estimate == 202
    assert report.database_bytes > 0
    assert report.extension_differences["pg_trgm"][Target.RDS.value] is None
    assert report.setting_differences["work_mem"] == {"neon": "7MB", "rds": "4MB"}
    assert report.connections["total"] >= 1


def test_the_other_side_is_clean(engines):
    prepare(engines)
    with engines[Target.RDS].begin() as conn:
        conn.execute(text("create table t (id int primary key)"))
    report = assess(engines, Target.RDS)
    assert report.duplicate_indexes == []
    assert report.invalid_indexes == []
    assert report.tables_without_primary_key == []
    assert [t.table for t in report.tables] == ["public.t"]


def test_top_statements_when_pg_stat_statements_is_loaded(engines):
    with engines[Target.NEON].connect() as conn:
        loaded = conn.execute(text("show shared_preload_libraries")).scalar_one()
    report = assess(engines, Target.NEON)
    assert isinstance(report.top_statements, str)
    assert "not installed" in report.top_statements
    if "pg_stat_statements" not in loaded:
        pytest.skip("pg_stat_statements not preloaded on the test servers")
    with engines[Target.NEON].begin() as conn:
        conn.execute(text("create extension pg_stat_statements"))
        conn.execute(text("create table marker_table (id int primary key)"))
        for _ in range(3):
            conn.execute(text("select count(*) from marker_table"))
    report = assess(engines, Target.NEON)
    assert isinstance(report.top_statements, list)
    assert report.top_statements
    with engines[Target.NEON].connect() as conn:
        statements = top_statements(conn, limit=1000)
    assert not isinstance(statements, str)
    assert any("marker_table" in s.query and s.calls >= 3 for s in statements)


def test_assess_cli_json_and_table(dbroute_databases, engines, monkeypatch):
    prepare(engines)
    monkeypatch.setenv("DBROUTE_NEON_URL", dbroute_databases.neon_url)
    monkeypatch.setenv("DBROUTE_RDS_URL", dbroute_databases.rds_url)
    runner = CliRunner()
    result = runner.invoke(main, ["assess", "--target", "neon", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tables_without_primary_key"] == ["public.events"]
    assert {d["index"] for d in data["duplicate_indexes"]} == {"users_email", "users_name_dup"}
    result = runner.invoke(main, ["assess", "--target", "neon"])
    assert result.exit_code == 0, result.output
    for expected in (
        "duplicate index",
        "users_name_dup",
        "no primary key",
        "public.events",
        "invalid index",
        "pg_trgm",
        "work_mem",
    ):
        assert expected in result.output


def test_unreachable_target_is_an_actionable_error(monkeypatch):
    monkeypatch.setenv("DBROUTE_NEON_URL", "postgresql://app:s3cr3t@127.0.0.1:1/app")
    monkeypatch.setenv("DBROUTE_RDS_URL", "postgresql://app:s3cr3t@127.0.0.1:2/app")
    result = CliRunner().invoke(main, ["assess", "--target", "rds"])
    assert result.exit_code == 1
    assert "AssessError: cannot assess rds: connection failed" in result.output
    assert "port 2" in result.output
    assert "check DBROUTE_RDS_URL" in result.output
    assert "s3cr3t" not in result.output
