"""The preconditions of a phase change, and what each one found.

Which checks a move needs follows from what it changes:

``health:<db>``
    every database the target phase uses is reachable, writable and not
    out of connections;
``backlog:<db>``
    when keys move, the dual-write journal of the database handing them over
    is empty (or below ``--max-backlog``): an entry there is a write the other
    side does not have yet, so moving its key would show that user stale data.
    This is what makes a rollback from ramp or rds_primary lose nothing;
``validation``
    when keys move, the last ``dbroute validate`` run was clean and recent, so
    the data the moved keys will read is proven equal. Starting or stopping
    the mirror (``neon_only`` ↔ ``dual_write``, ``rds_primary`` ↔ ``rds_only``)
    moves nobody and needs neither;
``sequences:<db>``
    on every database that is primary in the target phase, the next
    ``Limits.sequence_window`` values of each owned sequence hold no existing
    key of its column — on that database and, when the phase mirrors, on the
    other one (its keys arrive here). When both databases are primaries
    (ramp), the check of RDS also demands that its window and Neon's window
    of the same sequence are disjoint: both hand out ids, the mirror copies
    rows, and equal ids collide (``dbroute sequences sync --headroom``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from dbroute.phases.health import check_health, describe_error
from dbroute.phases.model import Phase, Transition, rules
from dbroute.phases.sequences import DEFAULT_WINDOW, SUGGESTED_HEADROOM, blocked_sequences
from dbroute.target import Target

__all__ = [
    "CHECK_KINDS",
    "DEFAULT_LIMITS",
    "Backlog",
    "Check",
    "Limits",
    "ValidationRecord",
    "journal_backlog",
    "latest_validation",
    "required_checks",
    "run_checks",
]

#: The kinds of check, as ``--skip`` names them.
CHECK_KINDS = ("health", "backlog", "validation", "sequences")


@dataclass(frozen=True, slots=True)
class Limits:
    """How strict the checks are."""

    max_backlog: int = 0
    max_validation_age: timedelta = timedelta(hours=1)
    #: An intent younger than this belongs to a writer on the other database
    #: that has not confirmed its commit yet: under load there are always a
    #: few, so only older ones count as backlog.
    backlog_grace: timedelta = timedelta(seconds=5)
    #: How many generated values ahead each sequence must find free of keys
    #: (and, in ramp, of the other database's sequence): an early warning.
    sequence_window: int = DEFAULT_WINDOW


#: The defaults of ``dbroute advance``: empty journals, a clean validation under an hour old.
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Check:
    """One precondition and its outcome."""

    name: str
    ok: bool
    detail: str
    #: The operator waived this check (``--skip``); it still ran and is audited.
    skipped: bool = False

    @property
    def passed(self) -> bool:
        """Whether this check lets the change go ahead."""
        return self.ok or self.skipped

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the history table stores)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ValidationRecord:
    """The newest ``dbroute validate`` run found on either database."""

    target: Target
    started_at: datetime
    finished_at: datetime | None
    clean: bool
    summary: Any


def involved(phase: Phase) -> frozenset[Target]:
    """The databases ``phase`` uses: its primaries and, when mirroring, both."""
    phase_rules = rules(phase)
    return frozenset(Target) if phase_rules.dual_write else phase_rules.primaries


def required_checks(move: Transition) -> list[tuple[str, Target | None]]:
    """The checks ``move`` needs, as ``(kind, database)`` pairs, in the order they run."""
    checks: list[tuple[str, Target | None]] = [("health", t) for t in sorted(involved(move.target))]
    # Only a move that hands keys from one database to the other needs their
    # data proven equal: starting or stopping the mirror (neon_only ↔ dual_write,
    # rds_primary ↔ rds_only) moves nobody; the next move that does is checked.
    if move.target_percent != move.source_percent:
        giver = Target.NEON if move.target_percent > move.source_percent else Target.RDS
        checks.append(("backlog", giver))
        checks.append(("validation", None))
    checks += [("sequences", t) for t in sorted(move.new_primaries)]
    return checks


def run_checks(
    engines: Mapping[Target, Engine],
    move: Transition,
    limits: Limits = DEFAULT_LIMITS,
    skip: Collection[str] = (),
) -> list[Check]:
    """Run every check ``move`` needs; checks named in ``skip`` are waived, not omitted."""
    runners: dict[str, Callable[[Target | None], Check]] = {
        "health": lambda t: _health(engines, _given(t)),
        "backlog": lambda t: _backlog(engines, _given(t), limits),
        "validation": lambda _t: _validation(engines, limits.max_validation_age),
        "sequences": lambda t: _sequences(engines, _given(t), move.target, limits.sequence_window),
    }
    results = []
    for kind, target in required_checks(move):
        check = runners[kind](target)
        if not check.ok and kind in skip:
            check = Check(check.name, False, check.detail + " (waived by --skip)", skipped=True)
        results.append(check)
    return results


def _given(target: Target | None) -> Target:
    assert target is not None, "per-database check without a database"
    return target


def _health(engines: Mapping[Target, Engine], target: Target) -> Check:
    health = check_health(target, engines[target])
    problem = health.problem()
    if problem:
        return Check(f"health:{target.value}", False, problem)
    return Check(
        f"health:{target.value}",
        True,
        f"PostgreSQL {health.server_version}, writable, connect {health.connect_ms} ms, "
        f"{health.connections}/{health.max_connections} connections",
    )


@dataclass(frozen=True, slots=True)
class Backlog:
    """The dual-write journal of one database."""

    #: Every entry, including those of transactions mirroring right now.
    total: int
    #: Entries no running transaction will clear: only replay copies them.
    settled: int

    def __str__(self) -> str:
        return f"{self.settled} ({self.total - self.settled} in flight)"


# In flight: a 'change' entry whose writer (on this database) is still running
# (its mirror deletes the entry before it commits), and a young intent (its
# writer on the other database confirms it right after committing). Both kinds
# through the dbroute.entries view (the journal alone before it existed).
_BACKLOG = """
    select count(*) as total,
           count(*) filter (where not (
               (kind = 'change' and pg_xact_status(xid) is not distinct from 'in progress')
               or (kind = 'intent' and created_at > clock_timestamp() - :grace)
           )) as settled
    from {entries}
"""


def journal_backlog(engine: Engine, grace: timedelta = DEFAULT_LIMITS.backlog_grace) -> Backlog:
    """The journal of ``engine``'s database (zero without a journal)."""
    from dbroute.dualwrite.journal import entries_relation  # the dual-write capability's contract

    with engine.connect() as conn:
        entries = entries_relation(conn)
        if entries is None:
            return Backlog(0, 0)
        row = conn.execute(text(_BACKLOG.format(entries=entries)), {"grace": grace}).one()
    return Backlog(int(row.total), int(row.settled))


def _backlog(engines: Mapping[Target, Engine], target: Target, limits: Limits) -> Check:
    name, bound = f"backlog:{target.value}", limits.max_backlog
    try:
        backlog = journal_backlog(engines[target], limits.backlog_grace)
    except Exception as exc:  # unreachable or no journal module: either way unproven
        return Check(name, False, f"cannot read the journal: {describe_error(exc)}")
    if backlog.settled > bound:
        return Check(
            name,
            False,
            f"{backlog} journal entries on {target.value} (bound {bound}): these writes are "
            "not on the other database yet; run `dbroute replay` and retry",
        )
    return Check(name, True, f"{backlog} journal entries (bound {bound})")


def latest_validation(engines: Mapping[Target, Engine]) -> ValidationRecord | None:
    """The newest validation run recorded on any reachable database, or ``None``.

    Raises ``ImportError`` when the validation capability is not installed.
    """
    from dbroute.validate import last_validation  # the validation capability's contract

    newest: ValidationRecord | None = None
    for target, engine in engines.items():
        try:
            record = last_validation(engine)
        except Exception:  # noqa: S112 - an unreachable side is reported by the health check
            continue
        if record is None:
            continue
        found = ValidationRecord(
            target, record.started_at, record.finished_at, bool(record.clean), record.summary
        )
        if newest is None or found.started_at > newest.started_at:
            newest = found
    return newest


def _validation(engines: Mapping[Target, Engine], max_age: timedelta) -> Check:
    try:
        record = latest_validation(engines)
    except ImportError:
        return Check("validation", False, "the validation capability (dbroute.validate) is missing")
    if record is None:
        return Check("validation", False, "no validation run found; run `dbroute validate`")
    if record.finished_at is None:
        return Check("validation", False, "the last validation run has not finished")
    age = datetime.now(UTC) - record.finished_at
    when = f"finished {record.finished_at:%Y-%m-%d %H:%M:%S %Z} ({_ago(age)} ago)"
    if not record.clean:
        return Check(
            "validation",
            False,
            f"the last validation found differences ({when}); repair them "
            "(`dbroute validate --repair`) and validate again",
        )
    if age > max_age:
        return Check(
            "validation",
            False,
            f"the last clean validation is stale: {when}, older than {_ago(max_age)}; "
            "run `dbroute validate` again",
        )
    return Check("validation", True, f"clean, {when}")


def _sequences(
    engines: Mapping[Target, Engine], target: Target, phase: Phase, window: int
) -> Check:
    name = f"sequences:{target.value}"
    phase_rules = rules(phase)
    both = len(phase_rules.primaries) == 2
    # A mirroring phase brings the other database's keys here: check them too.
    read = [target, target.other] if phase_rules.dual_write else [target]
    try:
        with ExitStack() as stack:
            conns = {t: stack.enter_context(engines[t].connect()) for t in read}
            # One check reports the overlap of two windows: RDS's, whose sequence moves.
            blocked = blocked_sequences(
                conns, target, window, overlap=both and target is Target.RDS
            )
    except Exception as exc:  # unreachable: unproven, so refused
        return Check(name, False, f"cannot read sequences: {describe_error(exc)}")
    if blocked:
        shown = "; ".join(b.detail for b in blocked[:5])
        more = f"; and {len(blocked) - 5} more" if len(blocked) > 5 else ""
        fix = f"dbroute sequences sync --from {target.other.value}"
        if both:
            fix += f" --headroom {max(SUGGESTED_HEADROOM, window)}"
        first = "`dbroute replay`, then " if any(b.needs_replay for b in blocked) else ""
        return Check(
            name,
            False,
            f"{len(blocked)} sequence(s) on {target.value} lack room for their next "
            f"{window} keys: {shown}{more}; run {first}`{fix}`",
        )
    disjoint = f", and apart from {target.other.value}'s" if both and target is Target.RDS else ""
    return Check(name, True, f"the next {window} values of every owned sequence are free{disjoint}")


def _ago(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
