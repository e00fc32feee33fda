"""Writing row images to the secondary: bounded waits, one round trip, typed outcomes.

Each database gets a small pool of its own for mirroring (sync and asyncio),
in autocommit mode, whose connections carry ``lock_timeout`` and
``statement_timeout`` (a cross-database lock wait cannot hang the app), a
short connect timeout and ``tcp_user_timeout`` (a partitioned network cannot
either). One mirror is one statement, ``select dbroute.apply(...)``: rows,
deletions and the writer's intent row commit together on the secondary. A
transaction that wrote one table calls that table's ``dbroute.dw_apply_<n>()``
instead, which skips the dispatch; a database that numbers its tables
otherwise refuses it, and the mirror falls back to ``dbroute.apply()``.

After a failure the secondary is *paused* for ``dual_write_pause_ms``:
commits journal straight away instead of paying a timeout each.

Confirmations (the writer committed: drop its intent row) stay off the
commit path: a background thread sends those gathered every
:data:`CONFIRM_INTERVAL` in one statement (``dbroute.confirm()``, which
deletes them by primary key and never waits for a row a replayer holds: it
returns those xids, tried again for a while). Riding along with the next
mirror would spare that thread a round trip but put the deletions' server
time on a commit's path. A confirmation lost with the process only leaves an
intent row that replay settles.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from dbroute.dualwrite.capture import Changes
from dbroute.dualwrite.codegen import POSITION_DIFFERS
from dbroute.dualwrite.conflicts import CONFLICT_SQLSTATE, Conflict, parse_conflicts
from dbroute.errors import DualWriteError
from dbroute.forking import fresh_pool_after_fork, on_fork_in_child, renewed_event
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["MirrorError", "Secondary", "describe_error"]

log = logging.getLogger("dbroute.dualwrite")

_APPLY = "select dbroute.apply(%s::jsonb, %s::xid8, false, true)"
# One table's payload: that table's function, with the position collect() found
# on the other database (an int, never user input). Refused when this database
# numbers its tables otherwise, or has no such function: then _APPLY.
_APPLY_TABLE = "select dbroute.dw_apply_{table}(%s::jsonb, %s::xid8, false, true)"
_NOT_THAT_TABLE = (POSITION_DIFFERS, "42883")  # 42883: undefined_function
# The xids whose entries were locked come back, to be tried again.
_CONFIRM = text("select cast(dbroute.confirm(cast(:xids as xid8[])) as text[])")
#: Seconds between background deletions of confirmed intent rows.
CONFIRM_INTERVAL = 0.2


class MirrorError(DualWriteError):
    """The secondary was not written; handled inside the commit protocol.

    Never raised to the application. ``error_type`` names why, for metrics;
    never a secret.
    """

    def __init__(self, error_type: str, message: str, conflicts: tuple[Conflict, ...] = ()) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.conflicts = conflicts


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error type, message)`` of a database error, without SQL text or parameters."""
    error = _driver_error(exc)
    if isinstance(error, psycopg.Error):
        primary = error.diag.message_primary or type(error).__name__
        return type(error).__name__, f"{error.sqlstate or 'error'}: {primary}"
    return type(error).__name__, f"{type(error).__name__}: {error}"


def _statement(changes: Changes) -> str:
    return _APPLY if changes.table is None else _APPLY_TABLE.format(table=int(changes.table))


def _refused_table(exc: BaseException) -> bool:
    """Whether the database numbers its tables otherwise (or lacks that function)."""
    error = _driver_error(exc)
    return isinstance(error, psycopg.Error) and error.sqlstate in _NOT_THAT_TABLE


def _failure(exc: BaseException, origin: Target) -> MirrorError:
    error = _driver_error(exc)
    if isinstance(error, psycopg.Error) and error.sqlstate == CONFLICT_SQLSTATE:
        conflicts = parse_conflicts(error.diag.message_detail, origin, "mirror")
        return MirrorError("conflict", "write conflict", conflicts)
    return MirrorError(*describe_error(exc))


class Secondary:
    """Mirrors row images into one database (the secondary of sessions on the other one)."""

    def __init__(self, settings: RoutingSettings, target: Target) -> None:
        self.target = target
        self._pause = settings.dual_write_pause_ms / 1000
        self._paused_until = 0.0
        self._confirmed: list[str] = []
        self._attempts: dict[str, int] = {}  # confirmations sent before, still to go
        # A row a replayer holds is tried again for a while (the replayer may
        # roll back and leave it); after that, replay settles it anyway.
        self._max_attempts = math.ceil(
            (settings.dual_write_statement_timeout_ms / 1000 + 1) / CONFIRM_INTERVAL
        )
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        url = settings.mirror_url(target)  # a direct endpoint: session settings persist
        pool = settings.pool(target)
        statement_ms = settings.dual_write_statement_timeout_ms
        options: dict[str, Any] = {
            "isolation_level": "AUTOCOMMIT",
            "pool_size": pool.size,
            "max_overflow": pool.max_overflow,
            "pool_timeout": statement_ms / 1000,
            "pool_recycle": pool.recycle,
            # No pre-ping (a round trip per commit): a stale connection is retried once.
            "pool_pre_ping": False,
            "connect_args": {
                "connect_timeout": settings.dual_write_connect_timeout,
                "options": f"-c lock_timeout={settings.dual_write_lock_timeout_ms} "
                f"-c statement_timeout={statement_ms}",
                "tcp_user_timeout": statement_ms + 1000,
                "application_name": "dbroute-dualwrite",
            },
        }
        self._engine: Engine = fresh_pool_after_fork(create_engine(url, **options))
        self._async_engine: AsyncEngine = fresh_pool_after_fork(create_async_engine(url, **options))
        on_fork_in_child(self, Secondary._after_fork)

    def _after_fork(self) -> None:
        # The parent's confirmations are the parent's to send; its thread is not here,
        # and the locks (the event's too) may have been held by another of its threads.
        self._lock = threading.Lock()
        self._confirmed = []
        self._attempts = {}
        self._flusher = None
        self._closed = renewed_event(self._closed)

    def _check_pause(self) -> None:
        # After a failure, commits journal at once for a while instead of each
        # paying a connect or lock timeout.
        if time.monotonic() < self._paused_until:
            raise MirrorError("paused", f"{self.target.value} paused after a recent failure")

    # --- confirmations -----------------------------------------------------------

    def confirm(self, xid: str) -> None:
        """The writer of ``xid`` committed: its intent row may go (no I/O here)."""
        with self._lock:
            self._confirmed.append(xid)
            if self._flusher is None and not self._closed.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_loop,
                    name=f"dbroute-confirm-{self.target.value}",
                    daemon=True,
                )
                self._flusher.start()

    def _take_confirmed(self) -> list[str]:
        with self._lock:
            taken, self._confirmed = self._confirmed, []
        return taken

    def _give_back(self, xids: list[str]) -> None:
        with self._lock:
            self._confirmed[:0] = xids

    def flush_confirmed(self) -> None:
        """Delete the confirmed intent rows now (also done in the background)."""
        xids = self._take_confirmed()
        if not xids:
            return
        try:
            with self._engine.connect() as connection:
                left: list[str] = connection.execute(_CONFIRM, {"xids": xids}).scalar_one()
        except SQLAlchemyError as exc:
            self._give_back(xids)  # kept for the next try; replay would settle them anyway
            log.debug(
                "confirming intents on %s failed: %s", self.target.value, describe_error(exc)[1]
            )
            return
        self._again(xids, left)

    def _again(self, sent: list[str], left: list[str]) -> None:
        # Rows a replayer held: it deletes them, or rolls back and leaves them.
        held = set(left)
        with self._lock:
            for xid in sent:
                attempts = self._attempts.pop(xid, 0) + 1
                if xid in held and attempts < self._max_attempts:
                    self._attempts[xid] = attempts
                    self._confirmed.append(xid)

    def _flush_loop(self) -> None:
        while not self._closed.wait(CONFIRM_INTERVAL):
            self.flush_confirmed()

    # --- mirroring ----------------------------------------------------------------

    def _failed(self, exc: BaseException, origin: Target) -> MirrorError:
        failure = _failure(exc, origin)
        if failure.error_type != "conflict":
            self._paused_until = time.monotonic() + self._pause
            log.warning("dual-write to %s failed: %s", self.target.value, failure.message)
        return failure

    def apply(self, changes: Changes, origin: Target) -> None:
        """Write ``changes`` (and the writer's intent row) in one statement; raise MirrorError."""
        self._check_pause()
        params = (changes.payload, changes.xid)
        statement = _statement(changes)
        reconnected = False
        while True:
            try:
                # The pooled driver connection itself: the least work per mirror.
                raw = self._engine.raw_connection()
            except (SQLAlchemyError, psycopg.Error) as exc:  # raw: unwrapped driver errors
                raise self._failed(exc, origin) from exc
            try:
                driver: Any = raw.driver_connection
                driver.execute(statement, params)
            except psycopg.Error as exc:
                # A lock or statement timeout leaves a healthy connection; a lost one
                # (the server restarted since it was pooled) is dropped and retried once.
                broken = bool(driver.broken or driver.closed)
                if broken:
                    raw.invalidate(exc)
                if broken and not reconnected:
                    reconnected = True
                    continue
                if statement != _APPLY and _refused_table(exc):
                    statement = _APPLY
                    continue
                raise self._failed(exc, origin) from exc
            finally:
                raw.close()
            return

    async def aapply(self, changes: Changes, origin: Target) -> None:
        """:meth:`apply` on the asyncio pool (called through the session's greenlet)."""
        self._check_pause()
        params = (changes.payload, changes.xid)
        statement = _statement(changes)
        reconnected = False
        while True:
            try:
                async with self._async_engine.connect() as connection:
                    await connection.exec_driver_sql(statement, params)
                return
            except DBAPIError as exc:
                if exc.connection_invalidated and not reconnected:
                    reconnected = True
                    continue
                if statement != _APPLY and _refused_table(exc):
                    statement = _APPLY
                    continue
                raise self._failed(exc, origin) from exc
            except SQLAlchemyError as exc:
                raise self._failed(exc, origin) from exc

    def dispose(self) -> None:
        """Send the last confirmations and close the sync pool."""
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(5)
        self.flush_confirmed()
        self._engine.dispose()

    async def adispose(self) -> None:
        """Close the asyncio pool (:meth:`dispose` closes the rest)."""
        await self._async_engine.dispose()
