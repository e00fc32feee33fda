"""Commits mirrored from the row images their capture trigger sent (real PostgreSQL).

A connection starts receiving images; a commit of several statements switches
it to counting them only, two commits of one in a row back to receiving images
(``dbroute.collect()`` decides).
"""

from __future__ import annotations

import logging

import psycopg
import pytest
from sqlalchemy import text
from tests.dualwrite import support
from tests.dualwrite.support import assert_converged, create_schema, journaled, kv_rows, write

from dbroute import Router, RoutingSettings, Target
from dbroute.dualwrite.codegen import NOTICE_SQLSTATE
from dbroute.dualwrite.mirror import DualWriter
from dbroute.testing import libpq_url


@pytest.fixture
def paths(monkeypatch):
    """How each commit was mirrored: "notice" or "collect", in order."""
    taken: list[str] = []
    sent, collected = DualWriter._mirror_sent, DualWriter._collect_and_mirror

    def from_notice(self, *args):
        taken.append("notice")
        return sent(self, *args)

    def from_collect(self, *args):
        taken.append("collect")
        return collected(self, *args)

    monkeypatch.setattr(DualWriter, "_mirror_sent", from_notice)
    monkeypatch.setattr(DualWriter, "_collect_and_mirror", from_collect)
    return taken


def warm(router: Router) -> None:
    """One single-statement commit: the pool has its connection, which receives images."""
    write(router, "u", "insert into kv values (-1, -1)")


def insert_undone(session, k: int) -> None:
    """Insert ``k`` in a savepoint then rolled back (its images were sent all the same)."""
    nested = session.begin_nested()
    session.execute(text(f"insert into kv values ({k}, {k})"))
    nested.rollback()


def nothing_journaled(router: Router) -> bool:
    return journaled(router.engine(Target.NEON)) == 0


def _kv_keys(router: Router, target: Target, kind: str) -> set[int]:
    query = "select pk[1]::int from dbroute.entries where kind = :kind and table_name = 'kv'"
    with router.engine(target).connect() as conn:
        return set(conn.execute(text(query), {"kind": kind}).scalars())


def intents(router: Router) -> set[int]:
    """Keys of kv with an intent on RDS (the warm-up's may still wait for confirmation)."""
    return _kv_keys(router, Target.RDS, "intent") - {-1}


def journaled_keys(router: Router) -> set[int]:
    """Keys of kv in Neon's journal."""
    return _kv_keys(router, Target.NEON, "change")


def test_a_one_statement_commit_is_mirrored_from_its_notice(dual_router, paths):
    warm(dual_router)
    write(dual_router, "u", "insert into kv values (1, 10), (2, 20)")
    assert paths == ["notice", "notice"]
    assert kv_rows(dual_router.engine(Target.RDS)) == {-1: -1, 1: 10, 2: 20}
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_updates_deletes_and_changed_keys(dual_router, paths):
    warm(dual_router)
    write(dual_router, "u", "insert into kv values (1, 10), (2, 20), (3, 30)")
    write(dual_router, "u", "update kv set v = v + 1 where k > 1")
    write(dual_router, "u", "update kv set k = k + 100 where k = 1")  # a changed key
    write(dual_router, "u", "delete from kv where k = 2")
    assert paths == ["notice"] * 5
    assert kv_rows(dual_router.engine(Target.RDS)) == {-1: -1, 3: 31, 101: 10}
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_an_upsert_is_one_statement_whichever_half_it_takes(dual_router, paths):
    warm(dual_router)
    upsert = "insert into kv values (1, {v}) on conflict (k) do update set v = excluded.v"
    write(dual_router, "u", upsert.format(v=1))  # inserts: its update trigger changed nothing
    write(dual_router, "u", upsert.format(v=2))  # updates: its insert trigger changed nothing
    assert paths == ["notice", "notice", "notice"]
    assert kv_rows(dual_router.engine(Target.RDS)) == {-1: -1, 1: 2}
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_several_statements_switch_the_connection_to_counting(dual_router, paths):
    warm(dual_router)
    write(dual_router, "u", "insert into kv values (1, 1)", "insert into kv values (2, 2)")
    write(dual_router, "u", "insert into kv values (3, 3)")  # counted, not sent
    write(dual_router, "u", "insert into kv values (4, 4)")  # two in a row: images again
    write(dual_router, "u", "insert into kv values (5, 5)")
    # A trigger writing another captured table is a second statement too.
    write(dual_router, "u", "insert into accounts (owner, balance) values ('ann', 1)")
    write(dual_router, "u", "insert into kv values (6, 6)")
    assert paths == ["notice", "collect", "collect", "collect", "notice", "collect", "collect"]
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_a_savepoint_rolled_back_after_its_images_were_sent(dual_router, paths):
    warm(dual_router)
    with dual_router.session("u") as session, session.begin():
        insert_undone(session, 7)
    assert paths == ["notice", "notice"]
    # The images reached RDS, but the row never committed: its key went back
    # to Neon's journal with the commit, and replay settles the row from
    # Neon's truth.
    assert 7 not in kv_rows(dual_router.engine(Target.NEON))
    assert 7 in kv_rows(dual_router.engine(Target.RDS))
    assert journaled_keys(dual_router) == {7}
    assert_converged(dual_router)
    assert 7 not in kv_rows(dual_router.engine(Target.RDS))


def test_a_savepoint_rolled_back_then_a_write_takes_the_usual_path(dual_router, paths):
    warm(dual_router)
    with dual_router.session("u") as session, session.begin():
        insert_undone(session, 7)
        session.execute(text("insert into kv values (8, 8)"))
    assert paths == ["notice", "collect"]
    assert kv_rows(dual_router.engine(Target.RDS)) == {-1: -1, 8: 8}
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_notices_the_client_does_not_receive(dual_router, paths):
    warm(dual_router)
    write(
        dual_router,
        "u",
        "set local client_min_messages = warning",
        "insert into kv values (1, 1)",
    )
    assert paths == ["notice", "collect"]  # nothing received: collect() first
    assert kv_rows(dual_router.engine(Target.RDS)) == {-1: -1, 1: 1}
    assert nothing_journaled(dual_router)
    assert_converged(dual_router)


def test_a_statement_over_the_limit_is_left_to_replay(make_router, paths):
    router = make_router(dual_write=True, dual_write_max_rows=3)
    create_schema(router)
    router.setup()
    warm(router)
    write(router, "u", "insert into kv select g, g from generate_series(1, 5) g")
    assert paths == ["notice", "collect"]
    assert 1 not in kv_rows(router.engine(Target.RDS))
    assert journaled(router.engine(Target.NEON)) == 5  # the change entries, for replay
    assert intents(router) == set()  # and no images were sent
    assert_converged(router)


def test_a_failed_mirror_journals_the_transaction(make_router, paths):
    router = make_router(dual_write=True, dual_write_lock_timeout_ms=50, dual_write_pause_ms=0)
    create_schema(router)
    router.setup()
    warm(router)
    with support.secondary_locked(router, Target.RDS):
        write(router, "u", "insert into kv values (1, 1)")
    assert paths == ["notice", "notice"]
    assert journaled(router.engine(Target.NEON)) == 1
    assert_converged(router)
    assert kv_rows(router.engine(Target.RDS)) == {-1: -1, 1: 1}


async def test_async_sessions(dual_router, paths):
    for k in (1, 2):
        async with dual_router.async_session("u") as session, session.begin():
            await session.execute(text(f"insert into kv values ({k}, {k})"))
    assert paths == ["notice", "notice"]
    assert kv_rows(dual_router.engine(Target.RDS)) == {1: 1, 2: 2}
    await dual_router.adispose()
    assert_converged(dual_router)


def test_other_clients_receive_no_images(dual_router, dbroute_databases):
    warm(dual_router)
    received = []
    with psycopg.connect(libpq_url(dbroute_databases.neon_url)) as conn:
        conn.add_notice_handler(received.append)
        conn.execute("insert into kv values (1, 1)")
        conn.execute("update kv set v = 2 where k = 1")
    assert [n for n in received if n.sqlstate == NOTICE_SQLSTATE] == []


def test_logged_notices_carry_no_row_values(dual_router, paths, caplog):
    # SQLAlchemy logs every notice's message at INFO, when asked.
    caplog.set_level(logging.INFO, logger="sqlalchemy.dialects.postgresql")
    warm(dual_router)
    write(dual_router, "u", "insert into counters values ('secret-name', 424242)")
    assert paths == ["notice", "notice"]
    notices = [r.getMessage() for r in caplog.records if "dbroute:" in r.getMessage()]
    assert notices  # logged, but without the values
    assert not [m for m in notices if "secret-name" in m or "424242" in m]


def test_which_databases_ask_for_notices():
    direct = "postgresql+psycopg://app:pw@db.example.com/app"
    pooled = "postgresql+psycopg://app:pw@ep-cool-1-pooler.us-east-2.aws.neon.tech/app"
    mirror = "postgresql+psycopg://app:pw@ep-cool-1.us-east-2.aws.neon.tech/app"
    urls = {"neon_url": pooled, "neon_mirror_url": mirror, "rds_url": direct}
    cases = [
        ({"dual_write": True}, {Target.RDS}),  # never through Neon's pooler
        ({"dual_write": True, "dual_write_mode": "strict"}, set()),
        ({"dual_write": True, "dual_write_notices": False}, set()),
        ({"dual_write": False}, set()),  # dual-write may come later, with a phase
    ]
    for overrides, expected in cases:
        with Router(RoutingSettings(**urls, **overrides)) as router:
            writer = DualWriter(router)
            assert writer.notices == expected, overrides
            writer.dispose()
