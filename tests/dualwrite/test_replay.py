"""Replay: idempotent, safe with several replayers at once and with writers changing
the rows being replayed."""

from __future__ import annotations

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
