"""The pipe between the application and its shadow worker process: length-prefixed pickles.

Application → worker: one :class:`WorkerConfig`, then jobs
(:func:`~dbroute.shadow.job.job_message` tuples); closing the pipe stops the
worker. Worker → application: lists of results, tagged tuples:

* ``(MATCHES, StatementInfo, primary target value, job ids, primary s, shadow s)``:
  the common case, the matches of one statement in a batch gathered (:func:`gather`),
  so the application's reader records them per statement, not one by one;
* ``(OUTCOME, job id, ShadowOutcome)``: mismatch, lag, error;
* ``(JUDGE, job id, Judgement)``: user callables must decide, in the application;
* ``(DROPPED, job id)``: the worker's queue was full;
* ``(UNREADABLE, job id)``: the job could not be unpickled in the worker.

Both ends are this package, the same version, in processes of the same user:
pickle is the simplest faithful codec for psycopg's values (Decimal, datetime,
UUID, JSON...).
"""

from __future__ import annotations

import io
import os
import pickle
import select
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from dbroute.target import Target

__all__ = [
    "DROPPED",
    "JUDGE",
    "MATCH",
    "MATCHES",
    "OUTCOME",
    "UNREADABLE",
    "WorkerConfig",
    "frame",
    "gather",
    "read_frame",
    "write_all",
]

#: Payload size and job id (0: not a job); the id travels outside the pickle so
#: a frame that cannot be read can still be answered.
_HEADER = struct.Struct("<IQ")

#: A match inside the worker, before :func:`gather`: ``(MATCH, job id, info, target, p, s)``.
MATCH = "m"
MATCHES = "M"
OUTCOME = "o"
JUDGE = "j"
DROPPED = "d"
UNREADABLE = "u"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What the worker process needs; sent over the pipe, never on the command line."""

    #: Connection URLs with their passwords: kept out of ``repr``.
    urls: dict[Target, str] = field(repr=False)
    pool_size: int
    statement_timeout: float
    row_cap: int
    recheck_delay: float
    float_tolerance: float
    include_values: bool
    workers: int
    queue_size: int


def frame(message: Any, job_id: int = 0) -> bytes:
    """``message`` pickled, behind its length and ``job_id`` (raises if it cannot be pickled)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data), job_id) + data


def gather(results: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``results`` with each statement's ``MATCH`` tuples gathered in one ``MATCHES`` tuple.

    Order is kept where it can mean something: every other result stays
    between the matches that came before and after it, and one statement's
    matches stay in order.
    """
    gathered: list[tuple[Any, ...]] = []
    groups: dict[tuple[str, str], tuple[Any, ...]] = {}
    for result in results:
        if result[0] != MATCH:
            gathered.append(result)
            groups = {}  # later matches go after it
            continue
        _, job_id, info, target, primary, shadow = result
        group = groups.get((info.fingerprint, target))
        if group is None:
            group = groups[info.fingerprint, target] = (MATCHES, info, target, [], [], [])
            gathered.append(group)
        group[3].append(job_id)
        group[4].append(primary)
        group[5].append(shadow)
    return gathered


def read_frame(stream: IO[bytes]) -> tuple[bool, Any]:
    """``(True, message)``, or ``(False, None)`` at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return False, None
    size, _ = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return False, None
    return True, pickle.loads(data)  # noqa: S301 - our own process at the other end


def poll_frames(fd: int, interval: float, idle_after: float = 1.0) -> Iterator[tuple[int, bytes]]:
    """``(job id, pickled message)`` of each frame read from ``fd`` until it ends.

    The payload is left to :func:`load`: one that cannot be read is that
    frame's problem, not the stream's. ``fd`` is polled every ``interval``
    seconds.

    Polling, rather than sleeping in ``read()``, is what keeps the writer's
    side cheap: a write that has to wake a sleeping reader on another CPU
    costs the writer ~15 us (an inter-processor interrupt; more in a VM),
    every time. After ``idle_after`` seconds without data the reader sleeps
    in ``select()`` instead, so an idle worker costs nothing.
    """
    os.set_blocking(fd, False)
    buffer = bytearray()
    last_data = time.monotonic()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            if time.monotonic() - last_data > idle_after:
                select.select([fd], [], [])
            else:
                time.sleep(interval)
            continue
        if not chunk:
            return
        last_data = time.monotonic()
        buffer += chunk
        start = 0
        while len(buffer) - start >= _HEADER.size:
            size, job_id = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            yield job_id, bytes(buffer[start + _HEADER.size : end])
            start = end
        del buffer[:start]


class _Unpickler(pickle.Unpickler):
    """Only the classes a job can hold: never a module of the application.

    Unpickling a class imports its module; an application module imported in
    the worker would run the application's import-time code there.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or module == "dbroute" or module.startswith("dbroute."):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a shadow job")


_ALLOWED = frozenset(
    {
        ("builtins", "bytearray"),
        ("builtins", "frozenset"),
        # zoneinfo.ZoneInfo pickles as getattr(ZoneInfo, "_unpickle")(key, ...). The
        # stream comes from the application itself: the point here is not to import
        # its modules, not to defend against a hostile stream.
        ("builtins", "getattr"),
        ("builtins", "set"),
        ("decimal", "Decimal"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("zoneinfo", "ZoneInfo"),
        ("zoneinfo._zoneinfo", "ZoneInfo"),
        ("uuid", "UUID"),
        ("uuid", "SafeUUID"),
        ("psycopg.types.json", "Json"),
        ("psycopg.types.json", "Jsonb"),
    }
)


def load(payload: bytes) -> Any:
    """A message from the application, unpickled with only the classes a job can hold."""
    return _Unpickler(io.BytesIO(payload)).load()


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe may take it in several writes)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
