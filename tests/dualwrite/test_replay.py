"""Replay: idempotent, safe with several replayers at once and with writers changing
the rows being replayed."""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import text
from tests.dualwrite.support import assert_converged, journaled, kv_rows, write

from dbroute.target import Target

ROWS = 600


def _journal_outside_the_app(router) -> None:
    # Writes from psql or a cron job: captured, waiting in Neon's journal.
    with router.engine(Target.NEON).begin() as conn:
        conn.execute(text("insert into kv select g, 0 from generate_series(1, :n) g"), {"n": ROWS})


def test_concurrent_replayers_split_the_work(dual_router):
    _journal_outside_the_app(dual_router)
    reports = []

    def replayer() -> None:
        reports.append(dual_router.replay(batch_size=25))

    threads = [threading.Thread(target=replayer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(report.ok for report in reports)
    assert sum(report.replayed for report in reports) == ROWS  # each entry copied once
    assert sum(1 for report in reports if report.replayed) > 1  # the work was shared
    assert_converged(dual_router)


def test_replay_is_idempotent(dual_router):
    _journal_outside_the_app(dual_router)
    assert dual_router.replay().replayed == ROWS
    assert dual_router.replay().replayed == 0
    with dual_router.engine(Target.NEON).begin() as conn:  # entries of rows already equal
        conn.execute(
            text(
                "insert into dbroute.journal (kind, table_schema, table_name, pk, xid) "
                "select 'change', 'public', 'kv', array[k::text], pg_current_xact_id() "
                "from kv where k <= 10"
            )
        )
    before = kv_rows(dual_router.engine(Target.RDS))
    assert dual_router.replay().replayed == 10
    assert kv_rows(dual_router.engine(Target.RDS)) == before
    assert_converged(dual_router)


def test_replay_while_writers_change_the_same_rows(dual_router):
    _journal_outside_the_app(dual_router)
    stop = threading.Event()
    failures: list[BaseException] = []
    bumps = [0] * 4

    def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                write(
                    dual_router, "u", f"update kv set v = v + 1 where k = {1 + (w * 7 + i) % ROWS}"
                )
            except BaseException as exc:
                failures.append(exc)
                return
            i += 1
            bumps[w] = i

    def replayer() -> None:
        while not stop.is_set():
            report = dual_router.replay(batch_size=20)
            if not report.ok:
                failures.append(AssertionError(report))
                return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=replayer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(bumps) < 300 and not failures and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:3]
    assert sum(kv_rows(dual_router.engine(Target.NEON)).values()) == sum(bumps)
    assert_converged(dual_router)
    assert journaled(dual_router.engine(Target.NEON)) == 0


def _unconfirmed_intent(router, xid: int, keys: range, stale_value: int | None = None) -> None:
    """An intent row on RDS from a Neon writer ``xid`` that never confirmed (its process died).

    ``stale_value``: what that writer left in RDS's rows (it never committed on Neon).
    """
    groups = [{"schema": "public", "table": "kv", "keys": [[str(k)] for k in keys]}]
    with router.engine(Target.RDS).begin() as conn:
        if stale_value is not None:
            conn.execute(
                text("set local dbroute.applying = 'on'")
            )  # as a mirror writes: uncaptured
            conn.execute(
                text("update kv set v = :v where k between :a and :b"),
                {"v": stale_value, "a": keys.start, "b": keys.stop - 1},
            )
        conn.execute(
            text("insert into dbroute.intents (xid, keys) values (cast(:x as xid8), :k)"),
            {"x": str(xid), "k": json.dumps(groups)},
        )


def _writer_xid(conn) -> int:
    return int(conn.execute(text("select pg_current_xact_id()::text")).scalar_one())


def test_intents_are_settled_by_their_writers_fate(dual_router):
    engine = dual_router.engine(Target.NEON)
    # Running: its writer may still commit or abort; left for the next run.
    with engine.connect() as writer, writer.begin():
        _unconfirmed_intent(dual_router, _writer_xid(writer), range(1, 4))
        report = dual_router.replay()
        assert (report.skipped, report.replayed, report.ok) == (3, 0, True)
        assert journaled(dual_router.engine(Target.RDS)) == 3  # still there, as intents
    # Committed (above, on leaving the block): RDS holds what it committed, the row goes.
    report = dual_router.replay()
    assert (report.skipped, report.replayed, report.ok) == (0, 0, True)
    assert journaled(dual_router.engine(Target.RDS)) == 0
    # Aborted: what it mirrored is copied over from Neon's truth (no such rows).
    with engine.connect() as writer:
        aborted = _writer_xid(writer)
        writer.rollback()
    with dual_router.engine(Target.RDS).begin() as conn:
        conn.execute(text("set local dbroute.applying = 'on'"))
        conn.execute(text("insert into kv values (1, -1), (2, -1), (3, -1)"))
    _unconfirmed_intent(dual_router, aborted, range(1, 4))
    assert dual_router.replay().replayed == 3
    assert kv_rows(dual_router.engine(Target.RDS)) == {}
    assert_converged(dual_router)


def test_replay_settles_intents_while_writers_change_the_same_rows(dual_router):
    # Stale images in RDS whose intents were never confirmed, and writers
    # changing those rows, once each, while replay settles them: an image read
    # before a writer's commit and copied after the writer's own mirror would
    # stay (no later write of the row repairs it).
    _journal_outside_the_app(dual_router)
    dual_router.replay()
    hot = range(1, 201)
    with dual_router.engine(Target.NEON).connect() as writer:
        aborted = _writer_xid(writer)  # a writer that mirrored, then failed its commit
        writer.rollback()
    _unconfirmed_intent(dual_router, aborted, hot, stale_value=-1)
    failures: list[BaseException] = []
    written = [0] * 4

    def writer(w: int) -> None:
        for k in hot[w::4]:
            try:
                write(dual_router, "u", f"update kv set v = 1 where k = {k}")
            except BaseException as exc:
                failures.append(exc)
                return
            written[w] += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        while sum(written) < 40 and not failures:  # replay in the middle of the writes
            time.sleep(0.001)
        report = dual_router.replay()
    finally:
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:3]
    assert report.ok, report
    assert report.replayed > 0  # keys of the aborted writer no writer had taken over yet
    assert sum(written) == len(hot)
    assert_converged(dual_router)
    assert set(kv_rows(dual_router.engine(Target.RDS)).values()) == {0, 1}
