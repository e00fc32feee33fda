"""Helpers shared by the phase tests."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, text

from dbroute.phases.checks import CHECK_KINDS as ALL_CHECKS
from dbroute.phases.control import PhaseControl
from dbroute.phases.model import Direction, Phase, rules


def force_phase(control: PhaseControl, phase: Phase, percent: Decimal | None = None) -> None:
    """Record ``phase`` through the normal path, waiving checks (test setup only)."""
    current = control.current().current
    if current.phase is phase and rules(phase).percent(percent) == current.rds_percent:
        return
    target = (phase.position, rules(phase).percent(percent))
    ahead = target > (current.phase.position, current.rds_percent)
    direction = Direction.ADVANCE if ahead else Direction.ROLLBACK
    plan = control.plan(direction, phase, percent=percent, skip=ALL_CHECKS)
    control.execute(plan, by="test", reason="test setup")


def plant_journal_entry(engine: Engine) -> None:
    """One pending dual-write journal entry, as a failed mirror leaves it (a minute ago)."""
    from dbroute.dualwrite.journal import JOURNAL, JOURNAL_DDL

    with engine.begin() as conn:
        conn.execute(text("create schema if not exists dbroute"))
        conn.execute(text(JOURNAL_DDL))
        conn.execute(
            text(
                f"insert into {JOURNAL} (kind, table_schema, table_name, pk, xid, created_at) "
                "values ('change', 'public', 'items', array['1'], pg_current_xact_id(), "
                "now() - interval '1 minute')"
            )
        )
