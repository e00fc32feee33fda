"""The shadow-read experiment of one router: sample, queue, run, compare, classify, report.

Scientist's vocabulary: the primary database is the *control* (``use``), the
other database the *candidate* (``try``); both are fixed by routing. What can
be customised, globally here or per statement through execution options
(:mod:`dbroute.shadow.job`), is ``compare``, ``ignore``, ``run_if`` and
``publish`` (plus ``on_mismatch``). Every exception of the candidate or of a
user callable is caught, logged and counted; none reaches the caller, who had
their result before the shadow even started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from dbroute.settings import RoutingSettings
from dbroute.shadow.compare import Comparison, Difference, compare_results
from dbroute.shadow.executor import BoundedExecutor
from dbroute.shadow.hooks import install, uninstall
from dbroute.shadow.job import Comparator, ShadowJob
from dbroute.shadow.lag import LagExplainer
from dbroute.shadow.outcome import ShadowMismatch, ShadowOutcome, Verdict
from dbroute.shadow.report import ReportBuilder, ShadowReport
from dbroute.shadow.results import ResultSet
from dbroute.shadow.runner import ShadowRunner
from dbroute.shadow.sampling import Sampler
from dbroute.shadow.statement import StatementInfo
from dbroute.target import Target
from dbroute.telemetry import (
    ATTR_ERROR_TYPE,
    ATTR_SHADOW_REASON,
    ATTR_SHADOW_SIDE,
    ATTR_TARGET,
    SHADOW_COMPARED,
    SHADOW_DROPPED,
    SHADOW_DURATION,
    SHADOW_ERRORS,
    SHADOW_LAGGED,
    SHADOW_MATCHED,
    SHADOW_MISMATCHED,
    SHADOW_SKIPPED,
)

if TYPE_CHECKING:
    from dbroute.router import Router

__all__ = ["ShadowReads"]

log = logging.getLogger("dbroute.shadow")

F = TypeVar("F", bound=Callable[..., Any])
_VERDICT_COUNTERS = {
    Verdict.MATCH: SHADOW_MATCHED,
    Verdict.MISMATCH: SHADOW_MISMATCHED,
    Verdict.LAGGED: SHADOW_LAGGED,
}


class ShadowReads:
    """Shadow reads of one router; ``router.shadow`` returns it.

    Register callables with the methods below (each returns its argument, so
    they work as decorators)::

        @router.shadow.ignore
        def updated_at_only(primary, shadow):
            ...
    """

    def __init__(self, settings: RoutingSettings) -> None:
        self.sampler = Sampler(settings.shadow_read_percent, settings.shadow_seed)
        self.row_cap = settings.shadow_row_cap
        self._include_values = settings.shadow_include_values
        self._tolerance = settings.shadow_float_tolerance
        self._runner = ShadowRunner(
            {target: settings.url(target) for target in Target},
            pool_size=settings.shadow_pool_size,
            statement_timeout=settings.shadow_statement_timeout,
            row_cap=settings.shadow_row_cap,
        )
        self._closing = threading.Event()
        self._lag = LagExplainer(
            self._runner,
            recheck_delay=settings.shadow_recheck_delay,
            float_tolerance=settings.shadow_float_tolerance,
            closing=self._closing,
        )
        self._executor = BoundedExecutor(settings.shadow_workers, settings.shadow_queue_size)
        self._report = ReportBuilder()
        self._compare: Comparator | None = None
        self._ignores: list[Comparator] = []
        self._run_if: Callable[[StatementInfo], bool] | None = None
        self._publishers: list[Callable[[ShadowOutcome], None]] = []
        self._on_mismatch: list[Callable[[ShadowMismatch], None]] = []
        self._listeners: list[Any] = []

    @classmethod
    def attach(cls, router: Router) -> ShadowReads:
        """Shadow ``router``'s session reads (sync and asyncio)."""
        from dbroute.router import INFO_TARGET

        experiment = cls(router.settings)
        experiment._listeners = install(experiment, router.session_class, INFO_TARGET)
        return experiment

    # --- Scientist vocabulary ------------------------------------------------

    def compare(self, function: Comparator) -> Comparator:
        """Replace the built-in equality: ``function(primary, shadow) -> bool``."""
        self._compare = function
        return function

    def ignore(self, function: Comparator) -> Comparator:
        """Add ``function(primary, shadow) -> bool``: True counts a difference as ``ignored``."""
        self._ignores.append(function)
        return function

    def run_if(self, function: Callable[[StatementInfo], bool]) -> Callable[[StatementInfo], bool]:
        """Shadow a sampled read only when ``function(statement_info)`` is true.

        It runs on the caller's path, for sampled reads only: keep it cheap.
        """
        self._run_if = function
        return function

    def publish(self, function: F) -> F:
        """Add ``function(outcome: ShadowOutcome)``, called for every shadow read (in a worker)."""
        self._publishers.append(function)
        return function

    def on_mismatch(self, function: F) -> F:
        """Add ``function(mismatch: ShadowMismatch)``, called for every real mismatch."""
        self._on_mismatch.append(function)
        return function

    # --- reporting and lifecycle --------------------------------------------

    def report(self) -> ShadowReport:
        """Aggregates per statement fingerprint, as of now."""
        return self._report.snapshot(pending=self._executor.pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued shadows to finish; ``False`` if ``timeout`` passed first."""
        return self._executor.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop: queued shadows are discarded (counted as dropped), running ones cancelled."""
        uninstall(self._listeners)
        self._listeners = []
        self._closing.set()
        discarded = self._executor.stop()
        if discarded:
            self._drop(discarded, "shutdown")
        self._runner.cancel_running()
        if not self._executor.join(timeout):
            log.warning("shadow reads: workers still busy after %.1fs at shutdown", timeout)
        self._runner.dispose()

    # --- called by the hooks (the caller's path: cheap, never raising) -------

    def should_run(self, info: StatementInfo) -> bool:
        """The ``run_if`` gate; a failing ``run_if`` means no."""
        if self._run_if is None:
            return True
        try:
            return bool(self._run_if(info))
        except Exception:
            log.exception("shadow read: run_if raised; read not shadowed")
            return False

    def skipped(self, reason: str) -> None:
        """Count a read not shadowed."""
        self._report.skip(reason)
        SHADOW_SKIPPED.add(1, {ATTR_SHADOW_REASON: reason})

    def submit(self, job: ShadowJob) -> None:
        """Queue ``job``; when the queue is full it is dropped and counted, never waited for."""
        if not self._executor.submit(lambda: self._run(job)):  # full, or closed at shutdown
            self._drop(1, "shutdown" if self._closing.is_set() else "queue_full")

    def _drop(self, count: int, reason: str) -> None:
        self._report.drop(count)
        SHADOW_DROPPED.add(count, {ATTR_SHADOW_REASON: reason})

    # --- the worker ----------------------------------------------------------

    def _run(self, job: ShadowJob) -> None:
        shadow_target = job.primary_target.other
        attributes = {ATTR_TARGET: shadow_target.value}
        try:
            shadow, seconds = self._runner.run(shadow_target, job.sql, job.parameters)
        except Exception as exc:
            self._error(job, exc, "shadow query")
            return
        try:
            verdict, comparison = self._judge(job, shadow)
        except Exception as exc:  # a user compare/ignore, or a lag lookup
            self._error(job, exc, "comparison")
            return
        mismatch = self._mismatch(job, shadow, comparison) if verdict is Verdict.MISMATCH else None
        outcome = ShadowOutcome(
            fingerprint=job.info.fingerprint,
            statement=job.info.normalized,
            primary=job.primary_target,
            shadow=shadow_target,
            verdict=verdict,
            primary_seconds=job.primary_seconds,
            shadow_seconds=seconds,
            difference=comparison.difference,
            mismatch=mismatch,
        )
        SHADOW_COMPARED.add(1, attributes)
        counter = _VERDICT_COUNTERS.get(verdict)
        if counter is not None:
            reason = comparison.difference.value if comparison.difference else "none"
            counter.add(1, {**attributes, ATTR_SHADOW_REASON: reason})
        SHADOW_DURATION.record(job.primary_seconds, {**attributes, ATTR_SHADOW_SIDE: "primary"})
        SHADOW_DURATION.record(seconds, {**attributes, ATTR_SHADOW_SIDE: "shadow"})
        if mismatch is not None:
            _log_mismatch(mismatch)
            self._call(self._on_mismatch, mismatch)
        self._finish(outcome)

    def _judge(self, job: ShadowJob, shadow: ResultSet) -> tuple[Verdict, Comparison]:
        comparison = compare_results(
            job.primary, shadow, ordered=job.info.ordered, float_tolerance=self._tolerance
        )
        compare = job.compare or self._compare
        if compare is not None:
            if compare(job.primary, shadow):
                return Verdict.MATCH, Comparison(None)
            if comparison.equal:  # the user's rule is stricter than ours
                comparison = Comparison(Difference.VALUES)
        elif comparison.equal:
            return Verdict.MATCH, comparison
        ignores = [job.ignore, *self._ignores] if job.ignore else self._ignores
        if any(ignore(job.primary, shadow) for ignore in ignores):
            return Verdict.IGNORED, comparison
        lagged = self._lag.is_lag(
            primary_target=job.primary_target,
            sql=job.sql,
            parameters=job.parameters,
            ordered=job.info.ordered,
            primary=job.primary,
            shadow=shadow,
            comparison=comparison,
        )
        return (Verdict.LAGGED if lagged else Verdict.MISMATCH), comparison

    def _mismatch(
        self, job: ShadowJob, shadow: ResultSet, comparison: Comparison
    ) -> ShadowMismatch:
        assert comparison.difference is not None
        primary_row = shadow_row = None
        first = comparison.first_difference
        if self._include_values and first is not None:
            if first < len(job.primary.rows):
                primary_row = tuple(job.primary.rows[first])
            unmatched = comparison.shadow_unmatched
            index = first if job.info.ordered else (unmatched[0] if unmatched else None)
            if index is not None and index < len(shadow.rows):
                shadow_row = tuple(shadow.rows[index])
        return ShadowMismatch(
            fingerprint=job.info.fingerprint,
            statement=job.info.normalized,
            primary=job.primary_target,
            shadow=job.primary_target.other,
            difference=comparison.difference,
            primary_rows=len(job.primary.rows),
            shadow_rows=len(shadow.rows),
            first_difference=first,
            primary_row=primary_row,
            shadow_row=shadow_row,
        )

    def _error(self, job: ShadowJob, exc: Exception, stage: str) -> None:
        error_type = type(exc).__name__
        shadow_target = job.primary_target.other
        SHADOW_ERRORS.add(1, {ATTR_TARGET: shadow_target.value, ATTR_ERROR_TYPE: error_type})
        # The message of a database error can quote row values: log the type only.
        log.warning(
            "shadow read failed in %s on %s: %s (statement %s)",
            stage,
            shadow_target.value,
            error_type,
            job.info.fingerprint,
            extra={"dbroute_shadow": {"fingerprint": job.info.fingerprint, "error": error_type}},
        )
        self._finish(
            ShadowOutcome(
                fingerprint=job.info.fingerprint,
                statement=job.info.normalized,
                primary=job.primary_target,
                shadow=shadow_target,
                verdict=Verdict.ERROR,
                primary_seconds=job.primary_seconds,
                shadow_seconds=None,
                error_type=error_type,
            )
        )

    def _finish(self, outcome: ShadowOutcome) -> None:
        self._report.add(outcome)
        self._call(self._publishers, outcome)

    def _call(self, functions: list[Callable[[Any], None]], argument: object) -> None:
        for function in functions:
            try:
                function(argument)
            except Exception as exc:
                SHADOW_ERRORS.add(1, {ATTR_ERROR_TYPE: type(exc).__name__})
                log.exception("shadow read: callback %r raised", function)


def _log_mismatch(mismatch: ShadowMismatch) -> None:
    fields: Mapping[str, Any] = {
        "fingerprint": mismatch.fingerprint,
        "statement": mismatch.statement,
        "primary": mismatch.primary.value,
        "shadow": mismatch.shadow.value,
        "difference": mismatch.difference.value,
        "primary_rows": mismatch.primary_rows,
        "shadow_rows": mismatch.shadow_rows,
        "first_difference": mismatch.first_difference,
    }
    log.warning(
        "shadow read mismatch %s (%s): %s=%d rows, %s=%d rows, first difference at row %s: %s",
        mismatch.fingerprint,
        mismatch.difference.value,
        mismatch.primary.value,
        mismatch.primary_rows,
        mismatch.shadow.value,
        mismatch.shadow_rows,
        mismatch.first_difference,
        mismatch.statement,
        extra={"dbroute_shadow": fields},
    )
