"""The phase table on both databases: reads, audited writes, compare-and-set, lag repair."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from dbroute.errors import PhaseStoreError, PreconditionError
from dbroute.phases.model import Direction, Phase
from dbroute.phases.store import INITIAL, read_current, read_history
from dbroute.target import Target

from .helpers import ALL_CHECKS, force_phase


def test_without_a_phase_table_the_migration_has_not_started(control):
    reading = control.current()
    assert reading.current == INITIAL
    assert reading.rows == {Target.NEON: None, Target.RDS: None}
    assert reading.lagging() == [Target.NEON, Target.RDS]


def test_a_change_is_recorded_and_audited_on_both_databases(control):
    plan = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    assert plan.allowed, plan.refusal()
    stored, failures = control.execute(plan, by="alice@ops", reason="OPS-1 start mirroring")
    assert failures == {}
    assert (stored.phase, stored.version, stored.changed_by) == (Phase.DUAL_WRITE, 1, "alice@ops")
    reading = control.current()
    assert reading.in_sync
    assert reading.current.phase is Phase.DUAL_WRITE
    for engine in control.engines.values():
        with engine.connect() as conn:
            [entry] = read_history(conn)
        assert (entry.from_phase, entry.to_phase, entry.version) == (
            Phase.NEON_ONLY,
            Phase.DUAL_WRITE,
            1,
        )
        assert (entry.changed_by, entry.reason) == ("alice@ops", "OPS-1 start mirroring")
        assert {c["name"] for c in entry.checks} == {c.name for c in plan.checks}
        assert entry.changed_at is not None


def test_a_reason_is_required(control):
    plan = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    with pytest.raises(PreconditionError, match="reason"):
        control.execute(plan, by="bob", reason="  ")
    assert control.current().current.version == 0


def test_a_stale_plan_loses_to_a_concurrent_change(control):
    first = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    second = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    control.execute(first, by="alice", reason="first")
    with pytest.raises(PhaseStoreError, match="changed meanwhile"):
        control.execute(second, by="bob", reason="second")
    reading = control.current()
    assert reading.current.version == 1
    assert reading.current.changed_by == "alice"


def test_a_concurrent_change_on_the_second_database_only_blocks_the_write_everywhere(control):
    force_phase(control, Phase.DUAL_WRITE)  # version 1 on both
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5), skip=ALL_CHECKS)
    # Meanwhile another operator's change reached RDS only (Neon was unreachable then).
    with control.engines[Target.RDS].begin() as conn:
        conn.execute(text("update dbroute.phase set phase = 'neon_only', version = 2"))
    with pytest.raises(PhaseStoreError, match="changed meanwhile on rds"):
        control.execute(plan, by="bob", reason="ramp 5")
    # Nothing was written on Neon: it still holds version 1, not a second "version 2".
    with control.engines[Target.NEON].connect() as conn:
        row = conn.execute(text("select phase, version from dbroute.phase")).one()
    assert tuple(row) == ("dual_write", 1)


def test_the_newest_version_wins_and_a_lagging_copy_is_repaired(control):
    force_phase(control, Phase.DUAL_WRITE)
    # Simulate a write that reached Neon only (RDS was down at that moment).
    with control.engines[Target.RDS].begin() as conn:
        conn.execute(text("update dbroute.phase set phase = 'neon_only', version = 0"))
    reading = control.current()
    assert reading.current.phase is Phase.DUAL_WRITE
    assert not reading.in_sync
    assert reading.lagging() == [Target.RDS]
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5), skip=ALL_CHECKS)
    control.execute(plan, by="test", reason="ramp 5")
    reading = control.current()
    assert reading.in_sync
    assert (reading.current.phase, reading.current.rds_percent) == (Phase.RAMP, Decimal(5))


def test_one_database_suffices_to_read_and_none_is_an_error(control):
    force_phase(control, Phase.DUAL_WRITE)
    nowhere = create_engine(
        "postgresql+psycopg://u@127.0.0.1:1/x", connect_args={"connect_timeout": 2}
    )
    try:
        reading = read_current({Target.NEON: nowhere, Target.RDS: control.engines[Target.RDS]})
        assert reading.current.phase is Phase.DUAL_WRITE
        assert isinstance(reading.rows[Target.NEON], str)
        with pytest.raises(PhaseStoreError, match="either database"):
            read_current({Target.NEON: nowhere, Target.RDS: nowhere})
    finally:
        nowhere.dispose()
