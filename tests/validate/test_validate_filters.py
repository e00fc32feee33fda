"""Journal awareness, filters, skipped tables, collations, statement timeouts."""

from __future__ import annotations

import pytest

from dbroute.dualwrite.journal import JOURNAL_DDL
from dbroute.errors import ConfigurationError, SegmentTimeoutError, ValidateError
from dbroute.validate import BisectOptions, DataOptions, compare_data

from .validate_helpers import Pair

DDL = """
create table t (id int primary key, v text, updated_at timestamptz);
insert into t select g, 'v' || g, timestamptz '2026-01-01 00:00+00' + g * interval '1 day'
from generate_series(1, 100) g;
"""


def test_journaled_keys_are_pending_not_changed(pair: Pair) -> None:
    pair.both(DDL)
    pair.run(pair.rds, "update t set v = 'new' where id in (4, 5)")
    pair.run(pair.rds, "delete from t where id = 6")
    pair.run(
        pair.neon,
        "create schema if not exists dbroute;"
        + JOURNAL_DDL
        + "insert into dbroute.journal (kind, table_schema, table_name, pk, xid)"
        " values ('change', 'public', 't', '{4}', pg_current_xact_id()),"
        "        ('change', 'public', 't', '{6}', pg_current_xact_id()),"
        "        ('change', 'public', 'other', '{5}', pg_current_xact_id())",
    )
    table = compare_data(pair.neon, pair.rds).table("public", "t")
    assert table.pending == [("4",), ("6",)]
    assert [c.key for c in table.changed] == [("5",)]
    assert table.only_in_neon == []
    assert table.differences == 1


def test_where_and_since_limit_the_rows(pair: Pair) -> None:
    pair.both(DDL)
    pair.run(pair.rds, "update t set v = 'x' where id in (10, 90)")
    where = compare_data(
        pair.neon, pair.rds, DataOptions(where="t.id < 50 and t.id::text like '%0'")
    )
    assert [c.key for c in where.table("public", "t").changed] == [("10",)]
    assert where.table("public", "t").rows_neon == 4
    since = compare_data(pair.neon, pair.rds, DataOptions(since=("updated_at", "2026-03-01")))
    assert [c.key for c in since.table("public", "t").changed] == [("90",)]
    assert since.table("public", "t").rows_neon == 100 - 58
    with pytest.raises(ConfigurationError, match="nope"):
        compare_data(pair.neon, pair.rds, DataOptions(since=("nope", "1")))
    with pytest.raises(ConfigurationError, match="missing_table"):
        compare_data(pair.neon, pair.rds, DataOptions(tables=["missing_table"]))


def test_tables_that_cannot_be_compared_are_reported(pair: Pair) -> None:
    pair.both(
        "create table nokey (v text); create table uniq (code text not null unique, v int);"
        "insert into uniq values ('a', 1), ('b', 2);"
    )
    pair.run(pair.neon, "create table only_neon (id int primary key)")
    pair.run(
        pair.rds, "alter table uniq add column extra int; update uniq set v = 3 where code = 'b'"
    )
    report = compare_data(pair.neon, pair.rds)
    assert report.table("public", "nokey").skipped is not None
    assert report.table("public", "only_neon").skipped == "missing on rds"
    uniq = report.table("public", "uniq")  # a unique key on NOT NULL columns serves as the key
    assert uniq.key_columns == ("code",)
    assert uniq.uncompared_columns == ("extra",)
    assert [c.key for c in uniq.changed] == [("b",)]
    assert not report.clean
    assert len(report.skipped) == 2


def test_keys_with_different_collations_compare_bytewise(pair: Pair) -> None:
    rows = "insert into w select chr(65 + g % 58) || g, g from generate_series(1, 3000) g;"
    pair.run(pair.neon, 'create table w (k text collate "C" primary key, n int);' + rows)
    pair.run(pair.rds, 'create table w (k text collate "und-x-icu" primary key, n int);' + rows)
    pair.run(pair.rds, "update w set n = -1 where n in (100, 2000, 555)")
    options = DataOptions(bisect=BisectOptions(leaf_rows=40, factor=4))
    table = compare_data(pair.neon, pair.rds, options).table("public", "w")
    changed = sorted(c.key[0] for c in table.changed)
    expected = sorted(
        r[0] for r in pair.rows(pair.neon, "select k from w where n in (100, 2000, 555)")
    )
    assert changed == expected
    assert len(changed) == 3
    assert table.only_in_neon == table.only_in_rds == []


def test_statement_timeouts_split_the_work(pair: Pair) -> None:
    # Row security on Neon stalls any statement past its 400th row: a deterministic
    # stand-in for "big queries exceed statement_timeout, small ones do not".
    pair.both(
        "create table slow (id int primary key, v int);"
        "insert into slow select g, g from generate_series(1, 3000) g; analyze slow;"
    )
    pair.run(
        pair.neon,
        """
        create function stall_after_400() returns boolean language plpgsql as $$
        begin
            if current_setting('stall.at', true) is distinct from statement_timestamp()::text then
                perform set_config('stall.at', statement_timestamp()::text, false);
                perform set_config('stall.rows', '0', false);
            end if;
            perform set_config('stall.rows', (current_setting('stall.rows')::int + 1)::text, false);
            if current_setting('stall.rows')::int > 400 then
                perform pg_sleep(10);
            end if;
            return true;
        end $$;
        create role validator; grant select on slow to validator;
        alter table slow enable row level security;
        create policy stall on slow using (stall_after_400());
        """,
    )
    pair.run(pair.rds, "update slow set v = 0 where id = 1034")
    options = DataOptions(
        statement_timeout_ms=200, bisect=BisectOptions(leaf_rows=100, max_segments=32)
    )
    with _as_role(pair, "validator") as slow_neon:
        table = compare_data(slow_neon, pair.rds, options).table("public", "slow")
        assert [c.key for c in table.changed] == [("1034",)]
        assert (table.rows_neon, table.rows_rds) == (3000, 3000)
        assert table.queries >= 10  # without splitting: a sample, two checksums, two leaves
        whole = DataOptions(statement_timeout_ms=200, bisect=BisectOptions(leaf_rows=5000))
        with pytest.raises(SegmentTimeoutError, match="statement timeout"):
            compare_data(slow_neon, pair.rds, whole)


class _as_role:
    """An engine on Neon whose connections run as ``role`` (row security applies)."""

    def __init__(self, pair: Pair, role: str) -> None:
        from sqlalchemy import create_engine, event

        self.engine = create_engine(pair.urls.neon_url)

        @event.listens_for(self.engine, "connect")
        def _set_role(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute(f"set role {role}")
            dbapi_connection.commit()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()


def test_database_errors_name_the_table(pair: Pair) -> None:
    pair.both(DDL)
    with pytest.raises(ValidateError, match=r"public\.t failed: .*no_such_column"):
        compare_data(pair.neon, pair.rds, DataOptions(where="no_such_column > 0"))
