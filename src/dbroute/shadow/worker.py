"""The shadow worker process: runs shadow queries, decodes, compares, classifies lag.

Started by the application (``python -m dbroute.shadow.worker``, see
:mod:`dbroute.shadow.process`) with a pipe on stdin and stdout. Everything a
shadow read costs beyond copying the primary's raw answer happens here, on
another CPU and under another GIL: the application's threads never wait for
it. It exits when the application says stop or its stdin closes (the
application is gone).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from dbroute.shadow.capture import decode, raw_equal
from dbroute.shadow.executor import BoundedExecutor
from dbroute.shadow.job import ShadowJob
from dbroute.shadow.judge import Judgement, builtin, conclude, error_outcome
from dbroute.shadow.lag import LagExplainer
from dbroute.shadow.statement import analyse
from dbroute.shadow.wire import (
    DROPPED,
    JUDGE,
    MATCH,
    OUTCOME,
    UNREADABLE,
    WorkerConfig,
    frame,
    gather,
    load,
    poll_frames,
    write_all,
)

__all__ = ["ShadowWorker", "main"]

log = logging.getLogger("dbroute.shadow")

#: Results are sent in batches: at most this many per frame, gathered for at
#: most this many seconds (each batch wakes the application's reader thread once).
_BATCH = 512
_LINGER = 0.02
#: How often the worker looks for new jobs while busy (see :func:`poll_frames`). The
#: application's sender writes every ~20 ms: polling each 1 ms cost this process's
#: main thread ~40 us of CPU a shadowed read, against ~20 us at 5 ms.
_POLL = 0.005


class ShadowWorker:
    """Runs the jobs read from the application; writes results back in batches."""

    def __init__(self, config: WorkerConfig, out_fd: int) -> None:
        self._config = config
        self._out_fd = out_fd
        self._closing = threading.Event()
        self._lag = LagExplainer.from_config(config, self._closing)
        self._runner = self._lag.runner
        self._executor = BoundedExecutor(config.workers, config.queue_size)
        self._results: list[tuple[Any, ...]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._writer = threading.Thread(target=self._write_loop, name="dbroute-shadow-out")

    def serve(self, messages: Iterator[tuple[int, bytes]]) -> None:
        """Run the jobs in ``messages`` (:func:`poll_frames`) until told to stop or they end."""
        self._writer.start()
        try:
            for job_id, payload in messages:
                try:
                    message = load(payload)
                except Exception:  # a bad job must not stop the others
                    log.warning("shadow worker: job %d cannot be read; skipped", job_id)
                    self._send((UNREADABLE, job_id))
                    continue
                if message is None:
                    break
                job = ShadowJob.from_wire(message)
                if not self._executor.submit(functools.partial(self._run, job)):
                    self._send((DROPPED, job.id))  # full: the application counts the drop
        finally:
            self._stop()

    def _stop(self) -> None:
        self._closing.set()
        self._executor.stop()  # queued jobs: the application counts them at shutdown
        self._runner.cancel_running()
        self._executor.join(5)
        self._runner.dispose()
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._writer.join()

    def _run(self, job: ShadowJob) -> None:
        info = analyse(job.sql)
        target = job.primary_target
        match = (MATCH, job.id, info, target.value, job.primary_seconds)
        try:
            shadow_raw, seconds = self._runner.run_raw(target.other, job.sql, job.parameters)
            if job.judge != "compare" and raw_equal(job.primary, shadow_raw, ordered=info.ordered):
                self._send((*match, seconds))  # the common case: the same bytes, nothing to decode
                return
            primary, shadow = decode(job.primary), decode(shadow_raw)
            comparison = builtin(primary, shadow, info, self._config.float_tolerance)
        except Exception as exc:
            error = error_outcome(info, target, job.primary_seconds, type(exc).__name__)
            self._send((OUTCOME, job.id, error))
            return
        if comparison.equal and job.judge != "compare":  # an ignore has nothing to ignore
            self._send((*match, seconds))
            return
        judgement = Judgement(
            job.id,
            info,
            job.sql,
            job.parameters,
            target,
            job.primary_seconds,
            seconds,
            primary,
            shadow,
            comparison,
        )
        if job.judge == "compare" or (job.judge == "ignore" and not comparison.equal):
            self._send((JUDGE, job.id, judgement))  # user callables live in the application
            return
        result = conclude(
            judgement,
            compare=None,
            ignores=(),
            is_lag=self._lag.is_lag,
            include_values=self._config.include_values,
        )
        self._send((OUTCOME, job.id, result))

    def _send(self, result: tuple[Any, ...]) -> None:
        with self._ready:
            self._results.append(result)
            if len(self._results) == 1 or len(self._results) >= _BATCH:
                self._ready.notify()

    def _write_loop(self) -> None:
        while True:
            with self._ready:
                while not self._results and not self._stopping:
                    self._ready.wait()
                if self._results and not self._stopping:  # let a batch gather
                    self._ready.wait_for(
                        lambda: len(self._results) >= _BATCH or self._stopping, _LINGER
                    )
                batch, self._results = self._results, []
                stopping = self._stopping
            if batch:
                try:
                    write_all(self._out_fd, frame(gather(batch)))
                except OSError:  # the application is gone
                    return
            if stopping:
                return


def main() -> None:
    """Entry point of ``python -m dbroute.shadow.worker``."""
    out_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt the pipe
    messages = poll_frames(sys.stdin.fileno(), _POLL)
    first = next(messages, None)
    config = load(first[1]) if first is not None else None
    if not isinstance(config, WorkerConfig):
        sys.exit("dbroute shadow worker: no configuration received on stdin")
    try:
        ShadowWorker(config, out_fd).serve(messages)
    except Exception:  # a frame cut short by the application's shutdown, or worse: say so
        log.exception("dbroute shadow worker stopped")


if __name__ == "__main__":
    main()
