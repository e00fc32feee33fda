"""The shadow-read experiment of one router: sample, capture, hand off, report.

Scientist's vocabulary: the primary database is the *control* (``use``), the
other database the *candidate* (``try``); both are fixed by routing. What can
be customised, globally here or per statement through execution options
(:mod:`dbroute.shadow.job`), is ``compare``, ``ignore``, ``run_if`` and
``publish`` (plus ``on_mismatch``). Every exception of the candidate or of a
user callable is caught, logged and counted; none reaches the caller, who had
their result before the shadow even started.

Where the work happens: the caller's thread only decides and queues the
primary's libpq result, undecoded (:mod:`dbroute.shadow.hooks`); a sender
thread copies and pickles it for a worker process, which runs,
decodes, compares and classifies (:mod:`dbroute.shadow.worker`); a reader
thread here records outcomes, metrics, logs and calls the callbacks. User
``compare``/``ignore`` callables cannot cross processes: reads they apply to
come back with both results and are judged here, on a small thread pool.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg.pq.abc import PGresult

from dbroute.forking import on_fork_in_child, renewed_event
from dbroute.settings import RoutingSettings
from dbroute.shadow.capture import cells
from dbroute.shadow.hooks import install, uninstall
from dbroute.shadow.job import Comparator, NotPortable, job_message, snapshot
from dbroute.shadow.judge import Judgement
from dbroute.shadow.local_judge import LocalJudge
from dbroute.shadow.process import WorkerProcess
from dbroute.shadow.publisher import Publisher
from dbroute.shadow.report import ShadowReport
from dbroute.shadow.sampling import Sampler
from dbroute.shadow.statement import StatementInfo
from dbroute.shadow.wire import JUDGE, MATCHES, OUTCOME, UNREADABLE, WorkerConfig, frame
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.router import Router

__all__ = ["ShadowReads"]

log = logging.getLogger("dbroute.shadow")

F = TypeVar("F", bound=Callable[..., Any])
#: Per-statement ``(compare, ignore)`` of a read in flight; ``None`` when it has neither.
_Callables = tuple[Comparator | None, Comparator | None] | None
_GONE = object()  # what _inflight.pop() returns for a read no longer in flight


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
        # Everything in flight is bounded here: the queue plus what the workers run.
        self._capacity = settings.shadow_queue_size + settings.shadow_workers
        self._inflight: dict[int, _Callables] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closing = threading.Event()
        on_fork_in_child(self, ShadowReads._after_fork)
        config = WorkerConfig(
            urls={t: settings.url(t).render_as_string(hide_password=False) for t in Target},
            pool_size=settings.shadow_pool_size,
            statement_timeout=settings.shadow_statement_timeout,
            row_cap=settings.shadow_row_cap,
            recheck_delay=settings.shadow_recheck_delay,
            float_tolerance=settings.shadow_float_tolerance,
            include_values=settings.shadow_include_values,
            workers=settings.shadow_workers,
            queue_size=settings.shadow_queue_size,
        )
        self._process = WorkerProcess(
            config, deliver=self._deliver, lost=self._lost, python=settings.shadow_python
        )
        self._publisher = Publisher()
        self._local = LocalJudge(config, self._closing)  # reads with user callables
        self._compare: Comparator | None = None
        self._ignores: list[Comparator] = []
        self._run_if: Callable[[StatementInfo], bool] | None = None
        self._listeners: list[Any] = []

    @classmethod
    def attach(cls, router: Router) -> ShadowReads:
        """Shadow ``router``'s session reads (sync and asyncio)."""
        from dbroute.router import INFO_TARGET

        experiment = cls(router.settings)
        engines = [router.engine(t) for t in Target]
        engines += [router.async_engine(t).sync_engine for t in Target]
        experiment._listeners = install(experiment, router.session_class, engines, INFO_TARGET)
        return experiment

    # --- Scientist vocabulary ------------------------------------------------

    def compare(self, function: Comparator) -> Comparator:
        """Replace the built-in equality: ``function(primary, shadow) -> bool``.

        It runs in the application's process for every shadowed read (the
        rows come back from the worker): prefer ``ignore``, which runs only
        on differences.
        """
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
        """Add ``function(outcome: ShadowOutcome)``, called for every shadow read (in a thread)."""
        self._publisher.publishers.append(function)
        return function

    def on_mismatch(self, function: F) -> F:
        """Add ``function(mismatch: ShadowMismatch)``, called for every real mismatch."""
        self._publisher.on_mismatch.append(function)
        return function

    # --- reporting and lifecycle --------------------------------------------

    def report(self) -> ShadowReport:
        """Aggregates per statement fingerprint, as of now."""
        return self._publisher.report.snapshot(pending=len(self._inflight))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued shadows to finish; ``False`` if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._inflight, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop: queued shadows are discarded (counted as dropped), running ones cancelled."""
        uninstall(self._listeners)
        self._listeners = []
        self._closing.set()
        self._process.close(timeout)
        self._local.close(timeout)
        self._abandon_all("shutdown")

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
        self._publisher.skipped(reason)

    def submit(
        self,
        target: Target,
        sql: str,
        parameters: Any,
        primary: PGresult,
        primary_seconds: float,
        compare: Comparator | None,
        ignore: Comparator | None,
    ) -> None:
        """Queue one read for the worker; dropped and counted when too many are in flight.

        The caller's path ends here: copying the primary's cells and pickling
        the job happen on the sender thread (:meth:`_encode`).
        """
        try:
            parameters = snapshot(parameters)  # also keeps application classes out of the worker
        except NotPortable:
            self._publisher.skipped("unsupported_parameters")
            return
        if compare or self._compare:
            judge: str | None = "compare"
        else:
            judge = "ignore" if ignore or self._ignores else None
        with self._lock:
            full = len(self._inflight) >= self._capacity or self._closing.is_set()
            if not full:
                job_id = next(self._ids)
                self._inflight[job_id] = (compare, ignore) if judge else None
        if full:
            self._refused()
            return
        self._process.send(
            job_id,
            functools.partial(
                self._encode, job_id, target, sql, parameters, primary, primary_seconds, judge
            ),
        )

    def _encode(
        self,
        job_id: int,
        target: Target,
        sql: str,
        parameters: Any,
        primary: PGresult,
        primary_seconds: float,
        judge: str | None,
    ) -> bytes | None:
        """The job's frame (on the sender thread); ``None`` when it cannot go to the worker."""
        try:
            raw = cells(primary)
        except Exception:  # the hook's own failure, as on the caller's path
            log.exception("shadow read: could not copy the primary's rows; read not shadowed")
            self._not_sent(job_id, "hook_failed")
            return None
        try:
            return frame(
                job_message(job_id, target, sql, parameters, raw, primary_seconds, judge), job_id
            )
        except Exception:  # a parameter pickle cannot carry: not shadowed, counted
            self._not_sent(job_id, "unsupported_parameters")
            return None

    def _not_sent(self, job_id: int, reason: str) -> None:
        """Count a queued read that will not reach the worker; it is no longer in flight."""
        self._forget(job_id)
        self.skipped(reason)

    def _after_fork(self) -> None:
        # The reads in flight are the parent's: its worker answers them, not ours.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = {}
        self._closing = renewed_event(self._closing)
        self._local.closing = self._closing  # the judge's lag rechecks watch it too

    def _forget(self, *job_ids: int) -> int:
        """No longer in flight; returns how many of ``job_ids`` still were."""
        with self._idle:
            forgotten = sum(self._inflight.pop(job_id, _GONE) is not _GONE for job_id in job_ids)
            if not self._inflight:
                self._idle.notify_all()
        return forgotten

    # --- results from the worker (reader thread) ----------------------------

    def _deliver(self, batch: list[tuple[Any, ...]]) -> None:
        inflight = self._inflight
        done: list[int] = []
        for result in batch:
            tag = result[0]
            if tag == MATCHES:  # the bulk: one statement's matches, recorded together
                _, info, primary_target, ids, primary, shadow = result
                if not all(job_id in inflight for job_id in ids):  # some lost with a worker
                    keep = [job_id in inflight for job_id in ids]
                    ids, primary, shadow = (
                        list(itertools.compress(values, keep)) for values in (ids, primary, shadow)
                    )
                if ids:
                    self._publisher.matches(info, primary_target, primary, shadow)
                    done += ids
                continue
            if tag == JUDGE:
                self._judge_here(result[2])  # still in flight until judged
                continue
            job_id = result[1]
            if job_id not in inflight:
                continue  # already counted as lost when a worker died
            done.append(job_id)
            if tag == OUTCOME:
                self._publisher.outcome(result[2])
            elif tag == UNREADABLE:
                self._publisher.skipped("unsupported_parameters")
            else:  # DROPPED
                self._publisher.dropped(1, "queue_full")
        if done:
            self._forget(*done)

    def _lost(self, job_ids: Sequence[int] | None) -> None:
        # The worker died (None: everything it held) or a job could not reach it.
        if job_ids is None:
            self._abandon_all("worker_exited")
        elif lost := self._forget(*job_ids):
            self._publisher.dropped(lost, "worker_exited")

    def _abandon_all(self, reason: str) -> None:
        """Count every read in flight as dropped for ``reason``; nothing waits for them."""
        with self._idle:
            abandoned = len(self._inflight)
            self._inflight.clear()
            self._idle.notify_all()
        if abandoned:
            self._publisher.dropped(abandoned, reason)

    def _refused(self) -> None:
        """Count a read that found no room (or arrived during shutdown)."""
        self._publisher.dropped(1, "shutdown" if self._closing.is_set() else "queue_full")

    def _judge_here(self, judgement: Judgement) -> None:
        # Still in flight until judged: flush() waits for the verdict.
        if not self._local.submit(lambda: self._finish_judgement(judgement)):
            self._refused()
            self._forget(judgement.job_id)

    def _finish_judgement(self, judgement: Judgement) -> None:
        callables: _Callables = self._inflight.get(judgement.job_id)
        compare, ignore = callables if callables is not None else (None, None)
        ignores = [ignore, *self._ignores] if ignore else self._ignores
        try:
            self._publisher.outcome(self._local.judge(judgement, compare or self._compare, ignores))
        finally:
            self._forget(judgement.job_id)
