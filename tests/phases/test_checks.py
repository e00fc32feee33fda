"""Each precondition refuses a phase change when it fails, and says what to do."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from dbroute.errors import PreconditionError
from dbroute.phases.model import Direction, Phase
from dbroute.target import Target

from .helpers import force_phase, plant_journal_entry


def failed(plan) -> dict[str, str]:
    return {c.name: c.detail for c in plan.checks if not c.passed}


def test_backlog_refuses_the_move_and_replay_is_the_advice(control):
    force_phase(control, Phase.DUAL_WRITE)
    plant_journal_entry(control.engines[Target.NEON])
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5), skip=["validation"])
    assert "backlog:neon" in failed(plan)
    assert "dbroute replay" in failed(plan)["backlog:neon"]
    assert "1 (0 in flight) journal entries" in failed(plan)["backlog:neon"]
    with pytest.raises(PreconditionError, match="backlog:neon"):
        control.execute(plan, by="test", reason="try")
    assert control.current().current.phase is Phase.DUAL_WRITE
    # A bound above the backlog lets it through.
    from dbroute.phases.checks import Limits

    lenient = control.plan(
        Direction.ADVANCE,
        Phase.RAMP,
        percent=Decimal(5),
        limits=Limits(max_backlog=1),
        skip=["validation"],
    )
    assert "backlog:neon" not in failed(lenient)


def test_rollback_to_neon_waits_for_the_rds_journal(control):
    force_phase(control, Phase.DUAL_WRITE)
    force_phase(control, Phase.RAMP, Decimal(50))
    force_phase(control, Phase.RDS_PRIMARY)
    plant_journal_entry(control.engines[Target.RDS])
    plan = control.plan(Direction.ROLLBACK, Phase.DUAL_WRITE, skip=["validation"])
    assert list(failed(plan)) == ["backlog:rds"]


def test_a_stopped_server_fails_its_health_check(control, dbroute_servers):
    force_phase(control, Phase.DUAL_WRITE)
    if not dbroute_servers.rds.controllable:
        pytest.skip("servers not started from local binaries")
    dbroute_servers.rds.stop()
    try:
        plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(1))
        problems = failed(plan)
        assert "unreachable" in problems["health:rds"]
        assert "cannot read sequences" in problems["sequences:rds"]
        assert not plan.allowed
        # Waived checks still run and are recorded as waived.
        waived = control.plan(
            Direction.ADVANCE,
            Phase.RAMP,
            percent=Decimal(1),
            skip=["health", "backlog", "validation", "sequences"],
        )
        assert waived.allowed
        assert all(c.skipped for c in waived.checks if not c.ok)
    finally:
        dbroute_servers.rds.start()


def test_a_read_only_database_is_unhealthy(control):
    with control.engines[Target.RDS].begin() as conn:
        db = conn.execute(text("select current_database()")).scalar_one()
        conn.execute(text(f'alter database "{db}" set default_transaction_read_only = on'))
    plan = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    assert "read-only" in failed(plan)["health:rds"]


def test_sequences_behind_their_keys_on_the_new_primary(control):
    force_phase(control, Phase.DUAL_WRITE)
    with control.engines[Target.RDS].begin() as conn:
        conn.execute(text("create table items (id bigserial primary key, name text)"))
        # Rows arrived by copy/mirror with their keys; the sequence never moved.
        conn.execute(text("insert into items (id, name) values (1, 'a'), (41, 'b')"))
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(1), skip=["validation"])
    detail = failed(plan)["sequences:rds"]
    assert "public.items_id_seq (next 1): key 1 of public.items.id" in detail
    assert "within its next 1000000 values [1, 1000000]" in detail
    assert "dbroute sequences sync --from neon --headroom 1000000000" in detail
    with control.engines[Target.RDS].begin() as conn:
        conn.execute(text("select setval('items_id_seq', 41)"))
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(1), skip=["validation"])
    assert plan.allowed, plan.refusal()


def _validate_and_record(control) -> bool:
    from dbroute.validate import record_run, validate

    neon, rds = control.engines[Target.NEON], control.engines[Target.RDS]
    report = validate(neon, rds)
    record_run(neon, rds, report)
    return report.clean


def test_validation_must_be_clean_and_recent(control):
    force_phase(control, Phase.DUAL_WRITE)
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5))
    assert "no validation run found" in failed(plan)["validation"]
    for engine in control.engines.values():
        with engine.begin() as conn:
            conn.execute(text("create table items (id int primary key, v text)"))
    assert _validate_and_record(control)
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5))
    assert plan.allowed, plan.refusal()
    assert "clean, finished" in next(c.detail for c in plan.checks if c.name == "validation")
    # Two hours later the same run is stale.
    for engine in control.engines.values():
        with engine.begin() as conn:
            conn.execute(
                text("update dbroute.validation_runs set finished_at = finished_at - interval '2h'")
            )
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5))
    assert list(failed(plan)) == ["validation"]
    assert "stale" in failed(plan)["validation"]
    assert "2 h ago" in failed(plan)["validation"]
    from datetime import timedelta

    from dbroute.phases.checks import Limits

    lenient = control.plan(
        Direction.ADVANCE,
        Phase.RAMP,
        percent=Decimal(5),
        limits=Limits(max_validation_age=timedelta(hours=3)),
    )
    assert lenient.allowed
    # A fresh run that found a difference refuses too.
    with control.engines[Target.NEON].begin() as conn:
        conn.execute(text("insert into items values (1, 'only on neon')"))
    assert not _validate_and_record(control)
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5))
    assert "found differences" in failed(plan)["validation"]
