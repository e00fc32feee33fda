"""setup / teardown: idempotent, refuses what it cannot mirror, never half-mirrors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.dualwrite.support import assert_converged, create_schema, write

from dbroute import Router, RoutingSettings
from dbroute.cli import main
from dbroute.dualwrite.journal import backlog, pending_keys
from dbroute.errors import DualWriteNotSetUpError, DualWriteSetupError
from dbroute.target import Target
from dbroute.testing import create_database_pair, drop_database_pair


def _triggers(router, target):
    with router.engine(target).connect() as conn:
        return conn.execute(
            text("select count(*) from pg_trigger where tgname like 'dbroute\\_%'")
        ).scalar_one()


def test_setup_is_idempotent_and_teardown_removes_everything(dual_router):
    reports = dual_router.setup()  # a second time: nothing changes
    assert {str(t) for t in reports[0].captured} == {
        "public.accounts",
        "public.entries",
        "public.audit",
        "public.counters",
        "public.kv",
    }
    assert [str(t) for t in reports[0].captured].index("public.accounts") < [
        str(t) for t in reports[0].captured
    ].index("public.entries")  # parents before children
    assert _triggers(dual_router, Target.NEON) == 5 * 4
    dual_router.teardown()
    functions = "select count(*) from pg_proc where pronamespace = 'dbroute'::regnamespace"
    for target in Target:
        assert _triggers(dual_router, target) == 0
        with dual_router.engine(target).connect() as conn:
            assert conn.execute(text(functions)).scalar_one() == 0
            assert backlog(conn) == 0
            assert pending_keys(conn, "public", "kv") == set()


def test_tables_without_primary_key_are_refused_by_name(make_router):
    router = make_router()
    create_schema(router, "create table logs (line text); create table t (id int primary key);")
    with pytest.raises(DualWriteSetupError, match=r"public\.logs"):
        router.setup()
    assert _triggers(router, Target.NEON) == 0  # nothing installed
    reports = router.setup(exclude=["logs"])
    assert reports[0].excluded == ("public.logs",)
    assert [str(t) for t in reports[0].captured] == ["public.t"]


def test_databases_with_different_tables_are_refused(make_router):
    router = make_router()
    with router.engine(Target.NEON).begin() as conn:
        conn.execute(text("create table only_here (id int primary key)"))
    with pytest.raises(DualWriteSetupError, match="only_here"):
        router.setup()


def test_teardown_refuses_while_the_journal_holds_entries(dual_router):
    with dual_router.engine(Target.NEON).begin() as conn:
        conn.execute(text("insert into kv values (1, 1)"))
    with pytest.raises(DualWriteSetupError, match="1 entries"):
        dual_router.teardown()
    dual_router.teardown(force=True)
    assert _triggers(dual_router, Target.NEON) == 0


def test_truncate_is_refused(dual_router):
    with (
        pytest.raises(DBAPIError, match=r"TRUNCATE public\.kv is not mirrored"),
        dual_router.engine(Target.NEON).begin() as conn,
    ):
        conn.execute(text("truncate kv"))


def test_dual_write_without_setup_fails_loudly(make_router):
    router = make_router(dual_write=True)
    create_schema(router, "create table t (id int primary key);")
    with pytest.raises(DualWriteNotSetUpError, match="dbroute setup"):
        write(router, "u", "insert into t values (1)")
    with router.engine(Target.NEON).connect() as conn:
        assert conn.execute(text("select count(*) from t")).scalar_one() == 0


@pytest.mark.parametrize(
    ("migration", "insert"),
    [
        ("alter table kv add column extra text default 'x'", "insert into kv values (1, 1)"),
        ("alter table kv drop column v", "insert into kv values (1)"),
    ],
    ids=["column-added", "column-dropped"],
)
def test_schema_drift_is_journaled_not_half_mirrored(dual_router, migration, insert):
    with dual_router.engine(Target.NEON).begin() as conn:  # migration run on one side only
        conn.execute(text(migration))
    with dual_router.session("u") as session, session.begin():
        session.execute(text(insert))
    with dual_router.engine(Target.NEON).connect() as conn:
        assert pending_keys(conn, "public", "kv") == {("1",)}
        error = conn.execute(text("select last_error from dbroute.journal")).scalar_one()
    assert "columns of public.kv differ" in error
    report = dual_router.replay()
    assert report.errors
    assert report.replayed == 0
    with dual_router.engine(Target.RDS).begin() as conn:  # the migration reaches RDS
        conn.execute(text(migration))
    dual_router.setup()
    assert_converged(dual_router)


def test_cli_commands(dual_router, dbroute_databases, monkeypatch):
    monkeypatch.setenv("DBROUTE_NEON_URL", dbroute_databases.neon_url)
    monkeypatch.setenv("DBROUTE_RDS_URL", dbroute_databases.rds_url)
    runner = CliRunner()
    result = runner.invoke(main, ["setup", "--exclude", "audit"])
    assert result.exit_code == 0, result.output
    assert "excluded (not mirrored): public.audit" in result.output
    with dual_router.engine(Target.RDS).begin() as conn:
        conn.execute(text("insert into kv values (3, 3)"))
    result = runner.invoke(main, ["journal", "status"])
    assert result.exit_code == 0, result.output
    assert "public.kv" in result.output
    assert "backlog: 1 entries" in result.output
    result = runner.invoke(main, ["replay"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 rows" in result.output
    result = runner.invoke(main, ["teardown"])
    assert result.exit_code == 0, result.output
    assert _triggers(dual_router, Target.RDS) == 0


# What an earlier dbroute setup installed: collect() returning jsonb, one xid
# index, intents as journal entries (one per key).
_PREVIOUS_INSTALL = """
drop view dbroute.entries;
drop table dbroute.intents;
create index journal_intent_xid on dbroute.journal (xid) where kind = 'intent';
drop function dbroute.collect(integer);
create function dbroute.collect(max_rows integer default null) returns jsonb
language sql as $$ select '[]'::jsonb $$;
create index journal_xid on dbroute.journal (xid);
drop function dbroute.apply(jsonb, xid8, boolean, boolean);
create function dbroute.apply(payload jsonb, origin_xid xid8 default null,
                              force boolean default false, confirmed xid8[] default null,
                              dedicated boolean default false)
returns integer language sql as $$ select 0 $$;
alter table dbroute.journal
    alter column kind type text collate "default",
    alter column table_schema type text collate "default",
    alter column table_name type text collate "default",
    alter column pk type text[] collate "default";
"""
_NEON_ENTRY = """
insert into dbroute.journal (kind, table_schema, table_name, pk, xid)
values ('change', 'public', 'kv', array['99'], pg_current_xact_id())
"""
# Intent entries of that version, on RDS: writer 7 mirrored keys 1 and 2, writer 8 key 3.
_RDS_INTENTS = """
insert into dbroute.journal (kind, table_schema, table_name, pk, xid) values
    ('intent', 'public', 'kv', array['1'], '7'), ('intent', 'public', 'kv', array['2'], '7'),
    ('intent', 'public', 'kv', array['3'], '8')
"""
_INTENTS = "select xid::text, keys from dbroute.intents order by xid"
_KEY_COLLATIONS = """
select attname, collname from pg_attribute join pg_collation c on c.oid = attcollation
where attrelid = 'dbroute.journal'::regclass
  and attname in ('kind', 'table_schema', 'table_name', 'pk')
order by 1
"""


def test_setup_upgrades_an_earlier_installation(dual_router):
    for target in Target:
        with dual_router.engine(target).begin() as conn:
            conn.exec_driver_sql(_PREVIOUS_INSTALL)
    with dual_router.engine(Target.NEON).begin() as conn:
        conn.exec_driver_sql(_NEON_ENTRY)
    with dual_router.engine(Target.RDS).begin() as conn:
        conn.exec_driver_sql(_RDS_INTENTS)
    dual_router.setup()
    for target in Target:
        with dual_router.engine(target).connect() as conn:
            indexes = conn.execute(
                text("select indexname from pg_indexes where tablename = 'journal' order by 1")
            ).scalars()
            assert list(indexes) == ["journal_change_xid", "journal_pkey"]
            # The key columns compare byte-wise now, and the entry made before is kept.
            assert [tuple(r) for r in conn.execute(text(_KEY_COLLATIONS))] == [
                ("kind", "C"),
                ("pk", "C"),
                ("table_name", "C"),
                ("table_schema", "C"),
            ]
            entries = "select count(*) from dbroute.journal where pk = array['99']"
            assert conn.execute(text(entries)).scalar_one() == (target is Target.NEON)
    # The intent entries became one intent row per writer.
    with dual_router.engine(Target.RDS).connect() as conn:
        kv = {"schema": "public", "table": "kv"}
        assert [tuple(r) for r in conn.execute(text(_INTENTS))] == [
            ("7", [{**kv, "keys": [["1"], ["2"]]}]),
            ("8", [{**kv, "keys": [["3"]]}]),
        ]
        legacy = "select count(*) from dbroute.journal where kind = 'intent'"
        assert conn.execute(text(legacy)).scalar_one() == 0
    write(dual_router, "u", "insert into kv values (1, 1)")
    with dual_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select v from kv where k = 1")).scalar_one() == 1
    assert_converged(dual_router)


# RDS creates databases with a linguistic collation (en_US.UTF-8); ICU's en-US
# orders text the same way, and differently from the journal's "C".
_LINGUISTIC = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"


def test_dual_write_in_databases_with_a_linguistic_collation(dbroute_servers):
    try:
        databases = create_database_pair(dbroute_servers, prefix="icu", options=_LINGUISTIC)
    except Exception as exc:  # a server built without ICU
        pytest.skip(f"no ICU collation on these servers: {exc}")
    router = Router(
        RoutingSettings(
            neon_url=databases.neon_url,
            rds_url=databases.rds_url,
            dual_write=True,
            dual_write_max_rows=1,  # so the transaction below is left to replay
        )
    )
    try:
        create_schema(router)
        router.setup()
        names = ["b", "B", "a", "Z", "é", "e", "ä", "10", "9"]  # C and en-US disagree on order
        inserts = [f"insert into counters values ('{n}', {i})" for i, n in enumerate(names)]
        write(router, "u", *inserts)
        with router.engine(Target.NEON).connect() as conn:
            assert backlog(conn) == len(names)
        # Batches of two: replay's keyset pagination walks the journal in its index order.
        assert router.replay(batch_size=2).replayed == len(names)
        assert_converged(router)
    finally:
        router.dispose()
        drop_database_pair(dbroute_servers, databases)
