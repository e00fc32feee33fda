"""``router.shadow_report()``: shadow reads aggregated per statement fingerprint.

Memory is bounded: the latest :data:`LATENCY_SAMPLES` latencies per statement
and side feed the percentiles, and at most :data:`MAX_STATEMENTS` statements
are tracked one by one; later ones are folded into one ``"other"`` row.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from dbroute.forking import on_fork_in_child
from dbroute.shadow.outcome import ShadowOutcome, Verdict

__all__ = ["LATENCY_SAMPLES", "MAX_STATEMENTS", "ReportBuilder", "ShadowReport", "StatementStats"]

LATENCY_SAMPLES = 1024
MAX_STATEMENTS = 500
OTHER = "other"


@dataclass(frozen=True, slots=True)
class StatementStats:
    """Shadow reads of one statement fingerprint. Latencies are in seconds."""

    fingerprint: str
    statement: str
    compared: int
    matched: int
    mismatched: int
    lagged: int
    ignored: int
    errors: int
    primary_p50: float | None
    primary_p99: float | None
    shadow_p50: float | None
    shadow_p99: float | None


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """A snapshot of every shadow read so far (see ``docs/shadow-reads.md``).

    ``skipped`` counts reads never shadowed, by reason; ``dropped`` sampled
    reads refused because the queue was full (or discarded at shutdown).
    """

    enabled: bool
    statements: tuple[StatementStats, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    pending: int = 0

    def _total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.statements)

    @property
    def compared(self) -> int:
        """Shadow reads compared (match, mismatch, lagged or ignored)."""
        return self._total("compared")

    @property
    def mismatched(self) -> int:
        """Shadow reads that differ, lag excluded."""
        return self._total("mismatched")

    @property
    def lagged(self) -> int:
        """Differences explained by replication lag."""
        return self._total("lagged")

    @property
    def errors(self) -> int:
        """Shadow reads that failed."""
        return self._total("errors")

    def statement(self, fingerprint: str) -> StatementStats:
        """The row of ``fingerprint``; ``KeyError`` if it was never shadowed."""
        for stats in self.statements:
            if stats.fingerprint == fingerprint:
                return stats
        raise KeyError(fingerprint)


class _Statement:
    __slots__ = ("counts", "primary", "shadow", "statement")

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.counts: Counter[Verdict] = Counter()
        self.primary: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.shadow: deque[float] = deque(maxlen=LATENCY_SAMPLES)


def _percentiles(samples: Iterable[float]) -> tuple[float | None, float | None]:
    """The p50 and p99 of ``samples`` (one sort for both)."""
    ordered = sorted(samples)
    if not ordered:
        return None, None

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return at(0.50), at(0.99)


class ReportBuilder:
    """Collects outcomes (thread-safe) and snapshots them as a :class:`ShadowReport`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        on_fork_in_child(self, ReportBuilder._after_fork)
        self._statements: dict[str, _Statement] = {}
        self._skipped: Counter[str] = Counter()
        self._dropped = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # the parent's other threads may have held it

    def add(self, outcome: ShadowOutcome) -> None:
        """Record one shadow read."""
        with self._lock:
            entry = self._entry(outcome.fingerprint, outcome.statement)
            entry.counts[outcome.verdict] += 1
            entry.primary.append(outcome.primary_seconds)
            if outcome.shadow_seconds is not None:
                entry.shadow.append(outcome.shadow_seconds)

    def add_matches(
        self, fingerprint: str, statement: str, primary: list[float], shadow: list[float]
    ) -> None:
        """Record matching shadow reads of one statement (their latencies on each side)."""
        with self._lock:
            entry = self._entry(fingerprint, statement)
            entry.counts[Verdict.MATCH] += len(primary)
            entry.primary.extend(primary)
            entry.shadow.extend(shadow)

    def _entry(self, fingerprint: str, statement: str) -> _Statement:
        # Called with the lock held.
        entry = self._statements.get(fingerprint)
        if entry is None:
            key = fingerprint if len(self._statements) < MAX_STATEMENTS else OTHER
            entry = self._statements.get(key)
            if entry is None:
                label = statement if key != OTHER else "(statements beyond the limit)"
                entry = self._statements[key] = _Statement(label)
        return entry

    def skip(self, reason: str) -> None:
        """Record a read not shadowed, and why."""
        with self._lock:
            self._skipped[reason] += 1

    def drop(self, count: int = 1) -> None:
        """Record sampled reads that could not be queued."""
        with self._lock:
            self._dropped += count

    def snapshot(self, pending: int = 0) -> ShadowReport:
        """The report as of now."""
        # Copy under the lock, sort outside it: skip() takes the lock on the caller's path.
        with self._lock:
            copied = [
                (
                    fingerprint,
                    entry.statement,
                    Counter(entry.counts),
                    [*entry.primary],
                    [*entry.shadow],
                )
                for fingerprint, entry in self._statements.items()
            ]
            skipped, dropped = dict(self._skipped), self._dropped
        rows = tuple(_stats(*statement) for statement in copied)
        return ShadowReport(True, rows, skipped, dropped, pending)


def _stats(
    fingerprint: str,
    statement: str,
    counts: Counter[Verdict],
    primary: list[float],
    shadow: list[float],
) -> StatementStats:
    primary_p50, primary_p99 = _percentiles(primary)
    shadow_p50, shadow_p99 = _percentiles(shadow)
    return StatementStats(
        fingerprint=fingerprint,
        statement=statement,
        compared=sum(counts[v] for v in Verdict if v is not Verdict.ERROR),
        matched=counts[Verdict.MATCH],
        mismatched=counts[Verdict.MISMATCH],
        lagged=counts[Verdict.LAGGED],
        ignored=counts[Verdict.IGNORED],
        errors=counts[Verdict.ERROR],
        primary_p50=primary_p50,
        primary_p99=primary_p99,
        shadow_p50=shadow_p50,
        shadow_p99=shadow_p99,
    )
