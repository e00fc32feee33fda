"""The application's end of the shadow worker process: start it, feed it, read it, stop it.

Why a process: shadow work in threads of the application's process takes the
GIL from the application's own threads (measured: a read shadowed by an
in-process thread cost its caller 3.4x). Here the caller's path is one
``deque.append`` of the job, the primary's libpq result still undecoded. Two
small threads do the rest:

* the *sender* starts the worker (``python -m dbroute.shadow.worker``, its
  configuration sent over the pipe, never on the command line), then, every
  :data:`_POLL` seconds while reads are being shadowed, encodes what callers
  queued (copies the cells, pickles) and writes it in one go. It polls
  rather than being woken: waking a sleeping thread costs the waker a system
  call and, across CPUs, an interrupt, every time; copying and pickling on
  the caller's path cost it ~50 us a read (both measured). Batching also
  means one GIL hand-over per batch, not one per read;
* the *reader* hands each batch of results to ``deliver``.

When the worker dies, ``lost(None)`` is called (the jobs it held are gone);
the next job starts a new one, at most once per :data:`RESTART_INTERVAL`.
After ``os.fork()`` the child process starts its own worker on first use.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from dbroute.forking import on_fork_in_child
from dbroute.shadow.wire import WorkerConfig, frame, read_frame

__all__ = ["RESTART_INTERVAL", "WorkerProcess"]

log = logging.getLogger("dbroute.shadow")

#: Seconds between two starts of the worker (a worker that dies at once is not respawned in a loop).
RESTART_INTERVAL = 1.0
#: Pipe capacity asked for (Linux): a burst of reads fits without the sender's help.
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux's F_SETPIPE_SZ (fcntl exports it from Python 3.10 on Linux only)
# So ``python -m dbroute.shadow.worker`` imports this very dbroute, whatever the sys.path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: A job waiting for the sender: its id and what encodes it.
_Job = tuple[int, Callable[[], "bytes | None"]]
#: How often the sender looks for jobs while busy, and after how long idle it sleeps.
_POLL = 0.02
_IDLE_AFTER = 1.0
#: Jobs per write at most: a burst is sent in pieces, not held in one buffer.
_BATCH = 256


class WorkerProcess:
    """One shadow worker process and the two threads that talk to it."""

    def __init__(
        self,
        config: WorkerConfig,
        deliver: Callable[[list[Any]], None],
        lost: Callable[[Sequence[int] | None], None],
        python: str | None = None,
    ) -> None:
        self._config = config
        self._python = python or sys.executable
        self._deliver = deliver
        self._lost = lost
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Jobs not yet encoded: appended by callers (atomic under the GIL), drained by the sender.
        self._outbox: collections.deque[_Job] = collections.deque()
        self._sender_asleep = False
        self._fd: int | None = None  # the worker's stdin
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        # The newest worker: a forked child releases its copies of that one's pipes.
        self._spawned: subprocess.Popen[bytes] | None = None
        self._started_at = -RESTART_INTERVAL
        self._closed = False
        on_fork_in_child(self, WorkerProcess._forget)

    def send(self, job_id: int, encode: Callable[[], bytes | None]) -> None:
        """Queue one job; ``encode()`` builds its frame later, on the sender thread.

        The caller's whole cost is a ``deque.append``: no copying, no pickling,
        no system call, no thread to wake while the sender is busy (it polls).
        ``encode`` returns ``None`` for a job it gave up on (and counted).
        """
        if self._closed:
            self._lost([job_id])
            return
        self._outbox.append((job_id, encode))
        if self._sender_asleep or self._sender is None:
            with self._wake:
                if self._sender is None:
                    self._sender = threading.Thread(
                        target=self._send_loop, name="dbroute-shadow-sender", daemon=True
                    )
                    self._sender.start()
                self._wake.notify()

    def _forget(self) -> None:
        # In a forked child: the threads and the worker belong to the parent. The
        # child's copies of the worker's pipes are released, or the parent's worker
        # would never see its stdin end while this child lives. Not by closing the
        # file objects (the parent's reader thread may have held their lock at the
        # fork) nor the descriptors (the objects would close them again later, by
        # then maybe someone else's): /dev/null takes their place. Only pipes still
        # open: a closed one's number may already be reused by the application.
        spawned, self._spawned = self._spawned, None
        if spawned is not None:
            _release_in_child(spawned.stdin, spawned.stdout)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._outbox = collections.deque()
        self._sender_asleep = False
        self._fd = None
        self._process = None
        self._reader = None
        self._sender = None

    # --- the sender --------------------------------------------------------------

    def _send_loop(self) -> None:
        idle_since = time.monotonic()
        while not self._closed:
            if not self._outbox:
                if time.monotonic() - idle_since < _IDLE_AFTER:
                    time.sleep(_POLL)  # see the module docstring: waking us would cost callers
                    continue
                with self._wake:
                    self._sender_asleep = True
                    if not self._outbox and not self._closed:
                        self._wake.wait()
                    self._sender_asleep = False
                idle_since = time.monotonic()
                continue
            self._send_batch()
            idle_since = time.monotonic()

    def _send_batch(self) -> None:
        ids: list[int] = []
        frames: list[bytes] = []
        outbox = self._outbox
        while outbox and len(frames) < _BATCH:
            job_id, encode = outbox.popleft()
            try:
                data = encode()
            except Exception:  # a bug, surely; the sender must outlive it
                log.exception("shadow reads: could not encode a job; read not shadowed")
                self._lost([job_id])
                continue
            if data is not None:
                ids.append(job_id)
                frames.append(data)
        if not frames:
            return
        fd = self._fd if self._fd is not None else self._start()
        if fd is None or not _write_blocking(fd, b"".join(frames), lambda: self._closed):
            with self._lock:
                self._fd = None
            self._lost(ids)

    def _start(self) -> int | None:
        wait = self._started_at + RESTART_INTERVAL - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self._closed:
            return None
        self._started_at = time.monotonic()
        try:
            process = self._spawn()
        except Exception:
            log.exception("shadow reads: could not start the worker process")
            return None
        assert process.stdin is not None
        fd = process.stdin.fileno()
        with contextlib.suppress(OSError):  # Linux only; the default 64 KiB works too
            import fcntl  # POSIX: the settings refuse shadow reads elsewhere

            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        os.set_blocking(fd, False)
        with self._lock:
            self._process, self._fd = process, fd
        return fd

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [self._python, "-m", "dbroute.shadow.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            # Out of the terminal's process group: a Ctrl-C is the application's
            # to handle; the worker stops when the application closes its stdin.
            start_new_session=True,
        )
        assert process.stdin is not None
        self._spawned = process
        # The reader first: a worker that exits at once (a wrong interpreter, say)
        # is then reported and reaped like any worker that exits.
        self._reader = threading.Thread(
            target=self._read_loop, args=(process,), name="dbroute-shadow-reader", daemon=True
        )
        self._reader.start()
        # A worker already gone breaks the pipe here: the first job's write fails
        # too and is counted as lost, and the reader reports the exit.
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(frame(self._config))
            process.stdin.flush()
        return process

    # --- the reader --------------------------------------------------------------

    def _read_loop(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        while True:
            try:
                more, batch = read_frame(process.stdout)
            except Exception:  # a truncated or foreign frame: treat as a dead worker
                log.exception("shadow reads: unreadable message from the worker process")
                more = False
            if not more:
                break
            try:
                self._deliver(batch)
            except Exception:  # reporting must not kill the reader
                log.exception("shadow reads: could not report shadow results")
        code = process.wait()
        with self._lock:
            if self._process is process:
                self._fd = None  # the next job starts a new worker
        if not self._closed:
            log.error("shadow reads: the worker process exited (code %s); restarting it", code)
            self._lost(None)

    # --- shutdown ----------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Stop the worker: queued jobs are discarded, running shadows cancelled.

        Closing the worker's stdin is the stop signal (a frame cut short by it
        is discarded there); the caller counts every job left unanswered.
        """
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._outbox.clear()
            self._wake.notify()
            sender, process = self._sender, self._process
        if sender is not None:
            sender.join(timeout)
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("shadow reads: worker still busy after %.1fs at shutdown; killed", timeout)
            process.kill()
            process.wait()
        if self._reader is not None:  # every result the worker sent is delivered
            self._reader.join(timeout)
            if not self._reader.is_alive() and process.stdout is not None:
                process.stdout.close()


def _release_in_child(*pipes: IO[bytes] | None) -> None:
    """Put ``/dev/null`` in place of each still-open pipe's descriptor (see ``_forget``)."""
    fds = [pipe.fileno() for pipe in pipes if pipe is not None and not pipe.closed]
    if not fds:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


def _write_blocking(fd: int, data: bytes, stopping: Callable[[], bool]) -> bool:
    """Write all of ``data`` to the non-blocking ``fd``, waiting; ``False`` if the pipe broke.

    Gives up as soon as ``stopping()`` says so: :meth:`WorkerProcess.close`
    waits for that before it closes ``fd``, whose number could then be reused.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            if stopping():
                return False
        except (OSError, ValueError):  # closed under us: the worker is gone or stopping
            return False
    return True
