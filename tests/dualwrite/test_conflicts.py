"""Conflicts: a shared row changed on both databases since they were last in sync is
detected, reported, and never silently overwritten, in mirroring and in replay."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from tests.dualwrite.support import (
    assert_converged,
    create_schema,
    kv_rows,
    secondary_locked,
    write,
)

from dbroute.errors import WriteConflictError
from dbroute.target import Target

SETTINGS = {
    "dual_write": True,
    "force_rds": "on-rds",
    "dual_write_pause_ms": 0,
    "dual_write_lock_timeout_ms": 300,
}


@pytest.fixture
def ramp_router(make_router):
    router = make_router(**SETTINGS)
    create_schema(router)
    router.setup()
    write(router, "on-neon", "insert into kv values (1, 0), (2, 0)")
    return router


def test_conflict_detected_when_mirroring_and_left_for_the_operator(ramp_router, metric_value):
    before = metric_value("dbroute.dualwrite.conflicts")
    with secondary_locked(ramp_router, Target.RDS):  # Neon's change stays journaled
        write(ramp_router, "on-neon", "update kv set v = 10 where k = 1")
    # An RDS user changes the same row: copying it to Neon would overwrite Neon's change.
    write(ramp_router, "on-rds", "update kv set v = 20 where k = 1")
    write(ramp_router, "on-rds", "update kv set v = 21 where k = 2")  # no conflict here
    assert metric_value("dbroute.dualwrite.conflicts") > before
    assert kv_rows(ramp_router.engine(Target.NEON)) == {1: 10, 2: 21}
    assert kv_rows(ramp_router.engine(Target.RDS)) == {1: 20, 2: 21}
    report = ramp_router.replay()
    assert {(c.table_name, c.pk) for c in report.conflicts} == {("kv", ("1",))}
    assert not report.ok
    # Nothing was overwritten, the entries stay on both sides.
    assert kv_rows(ramp_router.engine(Target.NEON)) == {1: 10, 2: 21}
    assert kv_rows(ramp_router.engine(Target.RDS)) == {1: 20, 2: 21}
    with ramp_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select bool_and(conflict) from dbroute.journal")).scalar()
    report = ramp_router.replay(prefer=Target.RDS)
    assert report.resolved == 1
    assert_converged(ramp_router)
    assert kv_rows(ramp_router.engine(Target.NEON)) == {1: 20, 2: 21}


def test_conflict_detected_by_replay(ramp_router):
    with secondary_locked(ramp_router, Target.RDS):
        write(ramp_router, "on-neon", "update kv set v = 10 where k = 1")
    with secondary_locked(ramp_router, Target.NEON):
        write(ramp_router, "on-rds", "update kv set v = 20 where k = 1")
    report = ramp_router.replay()
    assert len(report.conflicts) == 2  # each side's entry, each reported
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 10
    assert kv_rows(ramp_router.engine(Target.RDS))[1] == 20
    assert ramp_router.replay(prefer=Target.NEON).resolved == 1
    assert_converged(ramp_router)
    assert kv_rows(ramp_router.engine(Target.RDS))[1] == 10


def test_strict_mode_raises_on_conflict(make_router):
    router = make_router(**SETTINGS, dual_write_mode="strict")
    create_schema(router)
    router.setup()
    with router.engine(Target.NEON).begin() as conn:  # an unmirrored change on Neon
        conn.execute(text("insert into kv values (1, 1)"))
    with pytest.raises(WriteConflictError) as raised:
        write(router, "on-rds", "insert into kv values (1, 2)")
    assert [c.pk for c in raised.value.conflicts] == [("1",)]
    assert kv_rows(router.engine(Target.RDS)) == {}
    assert_converged(router)


def _wait_for_lock_wait(router) -> None:
    deadline = time.monotonic() + 10
    with router.engine(Target.NEON).connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "select count(*) from pg_stat_activity "
                    "where wait_event_type = 'Lock' and datname = current_database()"
                )
            ).scalar_one()
            if waiting:
                return
            conn.rollback()  # a new transaction sees fresh activity statistics
            time.sleep(0.01)
    raise AssertionError("the other side's mirror never waited for the row")


def test_overlapping_writes_on_both_sides_are_a_conflict(ramp_router):
    updated = threading.Event()
    errors: list[BaseException] = []

    def on_neon() -> None:
        try:
            with ramp_router.session("on-neon") as session, session.begin():
                session.execute(text("update kv set v = 10 where k = 1"))
                updated.set()
                _wait_for_lock_wait(ramp_router)  # the RDS writer's mirror waits for our row
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=on_neon)
    writer.start()
    assert updated.wait(10)
    write(ramp_router, "on-rds", "update kv set v = 20 where k = 1")
    writer.join(30)
    assert not errors  # best-effort: both commits succeeded
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 10
    assert kv_rows(ramp_router.engine(Target.RDS))[1] == 20
    report = ramp_router.replay()
    assert {c.source for c in report.conflicts} == {Target.NEON, Target.RDS}
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 10  # nothing overwritten
    assert kv_rows(ramp_router.engine(Target.RDS))[1] == 20
    ramp_router.replay(prefer=Target.RDS)
    assert_converged(ramp_router)
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 20


def test_an_unconfirmed_intent_on_a_row_changed_here_is_a_conflict(ramp_router):
    # A Neon writer mirrored k=1 into RDS and never confirmed its commit, while an
    # RDS user's change of k=1 could not reach Neon: which one is right is the
    # operator's call, as for any change made on both sides.
    with secondary_locked(ramp_router, Target.NEON):
        write(ramp_router, "on-rds", "update kv set v = 20 where k = 1")
    keys = '[{"schema": "public", "table": "kv", "keys": [["1"]]}]'
    with ramp_router.engine(Target.RDS).begin() as conn:
        conn.execute(text("insert into dbroute.intents (xid, keys) values ('7', :k)"), {"k": keys})
    report = ramp_router.replay()
    assert {(c.table_name, c.pk) for c in report.conflicts} == {("kv", ("1",))}
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 0
    assert kv_rows(ramp_router.engine(Target.RDS))[1] == 20
    assert ramp_router.replay(prefer=Target.RDS).resolved == 1
    assert_converged(ramp_router)
    assert kv_rows(ramp_router.engine(Target.NEON))[1] == 20
