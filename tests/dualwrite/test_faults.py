"""Fault injection while writers run: the secondary stopped, its backends killed, its
table locked; the primary's commit failing after the mirror. Replay converges: both
databases equal row by row, zero lost, zero extra."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from tests.dualwrite.support import (
    Writers,
    assert_converged,
    create_schema,
    journaled,
    kv_rows,
    secondary_locked,
    write,
)

from dbroute.errors import SecondaryWriteError
from dbroute.target import Target

FAST = {
    "dual_write": True,
    "dual_write_pause_ms": 50,
    "dual_write_lock_timeout_ms": 200,
    "dual_write_statement_timeout_ms": 2000,
}


@pytest.fixture
def fast_router(make_router):
    router = make_router(**FAST)
    create_schema(router)
    router.setup()
    return router


def assert_zero_lost(router, writers):
    assert not writers.errors, writers.errors[:3]  # best-effort: every commit succeeded
    expected = writers.expected_kv()
    assert kv_rows(router.engine(Target.NEON)) == expected
    assert_converged(router)
    assert kv_rows(router.engine(Target.RDS)) == expected


def test_secondary_server_stopped_mid_workload(fast_router, dbroute_servers, metric_value):
    errors_before = metric_value("dbroute.dualwrite.secondary_errors")
    with Writers(fast_router, threads=4) as writers:
        writers.wait_for(40)
        dbroute_servers.rds.stop()
        try:
            writers.wait_for(80)  # the app keeps committing on Neon
            assert journaled(fast_router.engine(Target.NEON)) > 0
        finally:
            dbroute_servers.rds.start()
        writers.wait_for(40)  # and mirroring resumes
    assert metric_value("dbroute.dualwrite.secondary_errors") > errors_before
    assert_zero_lost(fast_router, writers)


def test_secondary_backends_terminated(fast_router):
    with Writers(fast_router, threads=4) as writers:
        for _ in range(5):
            writers.wait_for(15)
            with fast_router.engine(Target.RDS).connect() as conn:
                conn.execute(
                    text(
                        "select pg_terminate_backend(pid) from pg_stat_activity "
                        "where application_name = 'dbroute-dualwrite' and pid <> pg_backend_pid()"
                    )
                )
    assert_zero_lost(fast_router, writers)


def test_secondary_table_locked(fast_router):
    with Writers(fast_router, threads=4) as writers:
        writers.wait_for(20)
        with fast_router.engine(Target.RDS).connect() as conn, conn.begin():
            conn.execute(text("lock table kv in access exclusive mode"))
            before = sum(writers.done)
            writers.wait_for(20)  # commits go on: the waits on RDS are bounded
            assert sum(writers.done) >= before + 20
            assert journaled(fast_router.engine(Target.NEON)) > 0
        writers.wait_for(20)
    assert_zero_lost(fast_router, writers)


def test_primary_commit_failing_after_the_mirror_is_undone_by_replay(fast_router):
    with fast_router.engine(Target.NEON).begin() as conn:
        conn.execute(text("insert into kv values (1, 1)"))
    for target in Target:
        with fast_router.engine(target).begin() as conn:
            conn.execute(
                text(
                    "alter table kv add constraint positive check (v > 0) not valid;"
                    "create table refs (id int primary key, k int references kv (k) "
                    "deferrable initially deferred)"
                )
            )
    fast_router.setup()
    fast_router.replay()
    # The deferred foreign key fails at COMMIT: after the row reached RDS.
    with pytest.raises(IntegrityError):
        write(
            fast_router, "u", "insert into refs values (1, 999)", "update kv set v = 5 where k = 1"
        )
    with fast_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select count(*) from refs")).scalar_one() == 1  # the window
        assert conn.execute(text("select v from kv")).scalar_one() == 5
    assert_converged(fast_router, {"kv": "k", "refs": "id"})
    with fast_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select count(*) from refs")).scalar_one() == 0
        assert conn.execute(text("select v from kv")).scalar_one() == 1


def test_strict_mode_secondary_down(make_router, dbroute_servers):
    router = make_router(**FAST, dual_write_mode="strict")
    create_schema(router)
    router.setup()
    with router.session("u") as session, session.begin():
        session.execute(text("insert into kv values (1, 1)"))
    dbroute_servers.rds.stop()
    try:
        with pytest.raises(SecondaryWriteError, match="nothing was committed"):
            write(router, "u", "update kv set v = 2", "insert into kv values (2, 2)")
    finally:
        dbroute_servers.rds.start()
    assert kv_rows(router.engine(Target.NEON)) == {1: 1}  # primary unchanged
    assert journaled(router.engine(Target.NEON)) == 0
    assert_converged(router)


def test_contention_sixteen_threads_on_a_few_rows(dual_router):
    rows, threads, each = 3, 16, 15
    with dual_router.session("u") as session, session.begin():
        session.execute(
            text("insert into kv select g, 0 from generate_series(1, :n) g"), {"n": rows}
        )
    failures: list[BaseException] = []

    def bump(t: int) -> None:
        for i in range(each):
            try:
                with dual_router.session("u") as session, session.begin():
                    session.execute(
                        text("update kv set v = v + 1 where k = :k"), {"k": 1 + (t + i) % rows}
                    )
            except BaseException as exc:
                failures.append(exc)

    workers = [threading.Thread(target=bump, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not failures
    assert sum(kv_rows(dual_router.engine(Target.NEON)).values()) == threads * each
    assert kv_rows(dual_router.engine(Target.RDS)) == kv_rows(dual_router.engine(Target.NEON))
    assert_converged(dual_router)


async def test_async_session_secondary_locked(make_router, metric_value):
    router = make_router(**FAST)
    create_schema(router)
    router.setup()
    before = {
        name: metric_value(f"dbroute.dualwrite.{name}", **{"dbroute.target": "neon"})
        for name in ("journaled", "replayed", "added_latency")
    }
    with secondary_locked(router, Target.RDS):
        async with router.async_session("u") as session, session.begin():
            await session.execute(text("insert into kv values (1, 1), (2, 2)"))
    assert journaled(router.engine(Target.NEON)) == 2
    assert_converged(router)
    after = {
        name: metric_value(f"dbroute.dualwrite.{name}", **{"dbroute.target": "neon"})
        for name in before
    }
    assert after["journaled"] == before["journaled"] + 2
    assert after["replayed"] == before["replayed"] + 2
    assert after["added_latency"] == before["added_latency"] + 1  # histogram: one commit
    await router.adispose()
