"""A small bounded pool of background threads: submit never blocks, a full queue refuses.

Shadow reads must never slow the caller down: :meth:`BoundedExecutor.submit`
either enqueues at once or returns ``False`` (the caller counts the drop).
Threads start on the first submit, so a router that never samples a read
never starts one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from dbroute.forking import on_fork_in_child

__all__ = ["BoundedExecutor"]

log = logging.getLogger("dbroute.shadow")

Job = Callable[[], None]
_STOP: Job = lambda: None  # noqa: E731 - the sentinel that stops one worker


class BoundedExecutor:
    """``workers`` daemon threads draining a queue of at most ``queue_size`` jobs."""

    def __init__(self, workers: int, queue_size: int, name: str = "dbroute-shadow") -> None:
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._workers = workers
        self._name = name
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        on_fork_in_child(self, BoundedExecutor._after_fork)

    def _after_fork(self) -> None:
        # The parent's threads are not here, and its queued jobs are its own.
        self._queue = queue.Queue(maxsize=self._queue.maxsize)
        self._threads = []
        self._lock = threading.Lock()

    def submit(self, job: Job) -> bool:
        """Queue ``job``; ``False`` (at once, never blocking) when full or closed."""
        with self._lock:
            if self._closed:
                return False
            if not self._threads:
                self._start()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                return False
            return True

    def stop(self) -> int:
        """Refuse new jobs, discard the queued ones (their count is returned), stop the workers.

        Running jobs finish; :meth:`join` waits for them.
        """
        discarded = 0
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                discarded += 1
        for _ in self._threads:  # outside the lock: a finishing worker needs it
            try:  # wakes idle workers; busy ones see _closed after their job
                self._queue.put(_STOP, timeout=0.5)
            except queue.Full:
                break
        return discarded

    def join(self, timeout: float) -> bool:
        """Wait for the workers to exit after :meth:`stop`; ``False`` if one is still busy.

        Workers are daemon threads, so one stuck past ``timeout`` cannot keep the
        process alive.
        """
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return not any(thread.is_alive() for thread in self._threads)

    def _start(self) -> None:
        for number in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            self._execute(job)
            if self._closed:
                return

    def _execute(self, job: Job) -> None:
        try:
            job()
        except Exception:  # a job reports its own errors; this keeps the worker alive
            log.exception("shadow job failed unexpectedly")
