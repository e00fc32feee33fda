"""The Python API behind ``dbroute status``, ``advance`` and ``rollback``.

Example::

from contextlib import closing
from dbroute.phases.control import PhaseControl

with closing(PhaseControl(RoutingSettings())) as control:
    plan = control.plan(Direction.ADVANCE, Phase.RAMP, percent=Decimal(5))
    print(plan.checks)  # what was checked, what failed
    control.execute(plan, by="alice", reason="OPS-12")  # refuses if a check failed
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dbroute.errors import PreconditionError
from dbroute.phases.checks import (
    DEFAULT_LIMITS,
    Backlog,
    Check,
    Limits,
    ValidationRecord,
    journal_backlog,
    latest_validation,
    run_checks,
)
from dbroute.phases.health import Health, admin_engine, check_health, describe_error
from dbroute.phases.model import Direction, Phase, Transition, check_transition, rules
from dbroute.phases.sequences import DEFAULT_WINDOW, Blocker, blocked_sequences
from dbroute.phases.store import HistoryEntry, StoredPhase, StoreReading, read_current, write_phase
from dbroute.phases.store import read_history as _read_history
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["PhaseControl", "Plan", "Status", "default_actor"]

T = TypeVar("T")


def default_actor() -> str:
    """``user@host`` of whoever runs the command (the audit's "who")."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Status:
    """Everything ``dbroute status`` shows."""

    store: StoreReading
    pinned: Phase | None
    health: dict[Target, Health]
    backlog: dict[Target, Backlog | str]
    validation: ValidationRecord | str | None
    #: Per database: the sequences whose next values are not free, by the rule
    #: of the ``sequences:<db>`` check for the stored phase (or why not read).
    sequences_without_room: dict[Target, list[Blocker] | str]
    history: list[HistoryEntry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        current = self.store.current
        validation: Any = self.validation
        if isinstance(self.validation, ValidationRecord):
            validation = {
                "database": self.validation.target.value,
                "started_at": self.validation.started_at,
                "finished_at": self.validation.finished_at,
                "clean": self.validation.clean,
                "summary": self.validation.summary,
            }
        return {
            "phase": current.phase.value,
            "rds_percent": str(current.rds_percent),
            "version": current.version,
            "changed_at": current.changed_at,
            "changed_by": current.changed_by,
            "reason": current.reason,
            "pinned_by_env": self.pinned.value if self.pinned else None,
            "store": {
                t.value: (row.version if isinstance(row, StoredPhase) else row)
                for t, row in self.store.rows.items()
            },
            "store_in_sync": self.store.in_sync,
            "health": {t.value: h.as_dict() for t, h in self.health.items()},
            "journal_backlog": {
                t.value: b if isinstance(b, str) else {"settled": b.settled, "total": b.total}
                for t, b in self.backlog.items()
            },
            "last_validation": validation,
            "sequences_without_room": {
                t.value: (
                    blocked
                    if isinstance(blocked, str)
                    else [
                        {"sequence": b.sequence, "detail": b.detail, "needs_replay": b.needs_replay}
                        for b in blocked
                    ]
                )
                for t, blocked in self.sequences_without_room.items()
            },
            "history": [
                {
                    "version": h.version,
                    "from": h.from_phase.value,
                    "from_percent": str(h.from_percent),
                    "to": h.to_phase.value,
                    "to_percent": str(h.to_percent),
                    "changed_at": h.changed_at,
                    "changed_by": h.changed_by,
                    "reason": h.reason,
                }
                for h in self.history
            ],
        }


@dataclass(frozen=True)
class Plan:
    """A checked phase change: the move, the version it starts from, the checks' outcomes."""

    transition: Transition
    expected_version: int
    checks: list[Check]

    @property
    def allowed(self) -> bool:
        """Whether every check passed (or was waived)."""
        return all(check.passed for check in self.checks)

    def refusal(self) -> str:
        """Why the change is refused (the failed checks and what to do)."""
        failed = [c for c in self.checks if not c.passed]
        return f"{self.transition} refused; failed checks:\n" + "\n".join(
            f"  - {c.name}: {c.detail}" for c in failed
        )


class PhaseControl:
    """Reads and changes the migration phase of the two databases in ``settings``."""

    def __init__(self, settings: RoutingSettings, connect_timeout: int = 5) -> None:
        self.settings = settings
        self.engines: dict[Target, Engine] = {
            t: admin_engine(settings.url(t), connect_timeout) for t in Target
        }

    def current(self) -> StoreReading:
        """The stored phase (newest version of the two databases)."""
        return read_current(self.engines)

    def status(self, history: int = 5) -> Status:
        """Phase, health, backlog, last validation and sequence state of both databases."""
        health = {t: check_health(t, e) for t, e in self.engines.items()}
        reading = self.current()
        reachable = [t for t in Target if health[t].reachable]
        backlog: dict[Target, Backlog | str] = {}
        sequences: dict[Target, list[Blocker] | str] = {}
        for target, engine in self.engines.items():
            if target not in reachable:
                backlog[target] = sequences[target] = "unreachable"
                continue
            backlog[target] = _or_error(journal_backlog, engine)
            sequences[target] = self._without_room(target, reading.current.phase, reachable)
        validation: ValidationRecord | str | None
        try:
            validation = latest_validation(self.engines)
        except ImportError:
            validation = "validation capability not installed"
        entries: list[HistoryEntry] = []
        for target, engine in self.engines.items():
            if not health[target].reachable:
                continue
            try:
                with engine.connect() as conn:
                    entries = _read_history(conn, history)
                break
            except SQLAlchemyError:  # gone since the health check: the other copy has it too
                continue
        return Status(reading, self.settings.phase, health, backlog, validation, sequences, entries)

    def _without_room(
        self, target: Target, phase: Phase, reachable: Collection[Target]
    ) -> list[Blocker] | str:
        # The sequences:<db> check's rule, for the phase in force: the other
        # database's keys count when it mirrors here; windows must be apart when
        # both are primaries.
        phase_rules = rules(phase)
        read = [target]
        if phase_rules.dual_write and target.other in reachable:
            read.append(target.other)
        overlap = len(phase_rules.primaries) == 2 and target is Target.RDS
        try:
            with ExitStack() as stack:
                conns = {t: stack.enter_context(self.engines[t].connect()) for t in read}
                return blocked_sequences(conns, target, DEFAULT_WINDOW, overlap=overlap)
        except Exception as exc:  # status shows what it could not read instead of failing whole
            return f"error: {describe_error(exc)}"

    def plan(
        self,
        direction: Direction,
        target: Phase,
        *,
        percent: Decimal | None = None,
        limits: Limits = DEFAULT_LIMITS,
        skip: Collection[str] = (),
    ) -> Plan:
        """Check the move from the stored phase to ``target``; nothing is changed.

        Raises :class:`~dbroute.errors.PhaseTransitionError` when the move is
        not allowed at all (skips phases, wrong direction).
        """
        current = self.current().current
        move = check_transition(
            current.phase,
            target,
            direction,
            source_percent=current.rds_percent,
            target_percent=percent,
        )
        return Plan(move, current.version, run_checks(self.engines, move, limits, skip))

    def execute(self, plan: Plan, *, by: str, reason: str) -> tuple[StoredPhase, dict[Target, str]]:
        """Record ``plan``'s phase on both databases (audited); refuse if a check failed.

        Returns the new stored phase and the databases it could not be written
        to (it is in force as soon as one has it; ``dbroute status`` shows the lag).
        """
        if not plan.allowed:
            raise PreconditionError(plan.refusal())
        if not reason.strip():
            raise PreconditionError("a phase change needs a reason (--reason) for the audit log")
        return write_phase(
            self.engines,
            plan.transition,
            expected_version=plan.expected_version,
            changed_by=by,
            reason=reason,
            checks=[check.as_dict() for check in plan.checks],
        )

    def close(self) -> None:
        """Close the admin engines (use ``contextlib.closing(PhaseControl(...))``)."""
        for engine in self.engines.values():
            engine.dispose()


def _or_error(read: Callable[[Engine], T], engine: Engine) -> T | str:
    try:
        return read(engine)
    except Exception as exc:  # status shows what it could not read instead of failing whole
        return f"error: {describe_error(exc)}"
