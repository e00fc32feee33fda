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

from dbroute.forking import on_fork_in_child
from dbroute.shadow.executor import BoundedExecutor
from dbroute.shadow.job import Comparator
from dbroute.shadow.judge import Judgement, conclude
from dbroute.shadow.lag import LagExplainer
from dbroute.shadow.outcome import ShadowOutcome
from dbroute.shadow.wire import WorkerConfig

__all__ = ["LocalJudge"]


class LocalJudge:
    """A bounded pool that finishes :class:`Judgement` s with the user's callables."""

    def __init__(self, config: WorkerConfig, closing: threading.Event) -> None:
        self._config = config
        #: Set when shadow reads close (replaced in a forked child, by their owner).
        self.closing = closing
        self._executor = BoundedExecutor(config.workers, config.queue_size, "dbroute-judge")
        self._lock = threading.Lock()
        self._lag: LagExplainer | None = None
        on_fork_in_child(self, LocalJudge._after_fork)

    def _after_fork(self) -> None:
        # The parent's lag pools and their connections are the parent's.
        self._lock = threading.Lock()
        self._lag = None

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; ``False`` at once when the pool is full or closed."""
        return self._executor.submit(work)

    def judge(
        self, judgement: Judgement, compare: Comparator | None, ignores: Sequence[Comparator]
    ) -> ShadowOutcome:
        """The outcome of ``judgement`` under ``compare`` and ``ignores`` (errors included)."""
        return conclude(
            judgement,
            compare=compare,
            ignores=ignores,
            is_lag=lambda **read: self._explainer().is_lag(**read),  # pools made on first need
            include_values=self._config.include_values,
        )

    def close(self, timeout: float) -> None:
        """Stop the pool (queued judgements are discarded) and close the lag pools."""
        self._executor.stop()
        self._executor.join(timeout)
        if self._lag is not None:
            self._lag.runner.dispose()

    def _explainer(self) -> LagExplainer:
        with self._lock:
            if self._lag is None:
                self._lag = LagExplainer.from_config(self._config, self.closing)
            return self._lag
