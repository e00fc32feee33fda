"""Judging, in the application's process, the shadow reads that have user callables.

User ``compare``/``ignore`` callables cannot cross to the worker process (a
lambda does not pickle, and importing the application there could have side
effects), so the worker sends such reads back with both results
(:class:`~dbroute.shadow.judge.Judgement`) and they are finished here, on a
small pool of background threads, never on the caller's path. A difference
the user's callables do not settle is checked for lag with pools of this
process (created on first need).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from dbroute.settings import RoutingSettings
from dbroute.shadow.executor import BoundedExecutor
from dbroute.shadow.job import Comparator
from dbroute.shadow.judge import Judgement, error_outcome, outcome, verdict
from dbroute.shadow.lag import LagExplainer
from dbroute.shadow.outcome import ShadowOutcome
from dbroute.shadow.runner import ShadowRunner
from dbroute.target import Target

__all__ = ["LocalJudge"]


class LocalJudge:
    """A bounded pool that finishes :class:`Judgement` s with the user's callables."""

    def __init__(self, settings: RoutingSettings, closing: threading.Event) -> None:
        self._settings = settings
        self._closing = closing
        self._executor = BoundedExecutor(
            settings.shadow_workers, settings.shadow_queue_size, "dbroute-judge"
        )
        self._lock = threading.Lock()
        self._runner: ShadowRunner | None = None
        self._lag: LagExplainer | None = None

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; ``False`` at once when the pool is full or closed."""
        return self._executor.submit(work)

    def judge(
        self, judgement: Judgement, compare: Comparator | None, ignores: Sequence[Comparator]
    ) -> ShadowOutcome:
        """The outcome of ``judgement`` under ``compare`` and ``ignores`` (errors included)."""
        info, target = judgement.info, judgement.primary_target
        try:
            judged = verdict(
                judgement.primary,
                judgement.shadow,
                judgement.comparison,
                compare=compare,
                ignores=ignores,
                lag=lambda difference: self._explainer().is_lag(
                    primary_target=target,
                    sql=judgement.sql,
                    parameters=judgement.parameters,
                    ordered=info.ordered,
                    primary=judgement.primary,
                    shadow=judgement.shadow,
                    comparison=difference,
                ),
            )
        except Exception as exc:  # a user compare/ignore, or a lag lookup
            return error_outcome(info, target, judgement.primary_seconds, type(exc).__name__)
        return outcome(
            info=info,
            primary_target=target,
            primary_seconds=judgement.primary_seconds,
            shadow_seconds=judgement.shadow_seconds,
            primary=judgement.primary,
            shadow=judgement.shadow,
            judged=judged,
            include_values=self._settings.shadow_include_values,
        )

    def close(self, timeout: float) -> None:
        """Stop the pool (queued judgements are discarded) and close the lag pools."""
        self._executor.stop()
        self._executor.join(timeout)
        if self._runner is not None:
            self._runner.dispose()

    def _explainer(self) -> LagExplainer:
        with self._lock:
            if self._lag is None:
                settings = self._settings
                self._runner = ShadowRunner(
                    {t: settings.url(t) for t in Target},
                    pool_size=settings.shadow_pool_size,
                    statement_timeout=settings.shadow_statement_timeout,
                    row_cap=settings.shadow_row_cap,
                )
                self._lag = LagExplainer(
                    self._runner,
                    recheck_delay=settings.shadow_recheck_delay,
                    float_tolerance=settings.shadow_float_tolerance,
                    closing=self._closing,
                )
            return self._lag
