"""Writing row images to the secondary: bounded waits, one round trip, typed outcomes.

Each database gets a small pool of its own for mirroring (sync and asyncio),
in autocommit mode, whose connections carry ``lock_timeout`` and
``statement_timeout`` (a cross-database lock wait cannot hang the app), a
short connect timeout and ``tcp_user_timeout`` (a partitioned network cannot
either). One mirror is one statement, ``select dbroute.apply(...)``: rows,
deletions and the intent entries commit together on the secondary.

After a failure the secondary is *paused* for ``dual_write_pause_ms``:
commits journal straight away instead of paying a timeout each.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from dbroute.dualwrite.capture import Changes
from dbroute.dualwrite.conflicts import CONFLICT_SQLSTATE, Conflict, parse_conflicts
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["ApplyFailure", "Secondary"]

log = logging.getLogger("dbroute.dualwrite")

_APPLY = text("select dbroute.apply(cast(:payload as jsonb), cast(:xid as xid8))")
_CONFIRM = text("delete from dbroute.journal where kind = 'intent' and xid = cast(:xid as xid8)")


class ApplyFailure(Exception):
    """The secondary was not written. ``error_type`` names why (for metrics), never a secret."""

    def __init__(
        self, error_type: str, message: str, conflicts: tuple[Conflict, ...] = ()
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.conflicts = conflicts


def _failure(exc: BaseException, origin: Target) -> ApplyFailure:
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        diag = getattr(exc.orig, "diag", None)
        if sqlstate == CONFLICT_SQLSTATE:
            detail = getattr(diag, "message_detail", None)
            conflicts = parse_conflicts(detail, origin, "mirror")
            return ApplyFailure("conflict", "write conflict", conflicts)
        primary = getattr(diag, "message_primary", None) or type(exc.orig).__name__
        return ApplyFailure(type(exc.orig).__name__, f"{sqlstate or 'error'}: {primary}")
    return ApplyFailure(type(exc).__name__, f"{type(exc).__name__}: {exc}")


class Secondary:
    """Mirrors row images into one database (the secondary of sessions on the other one)."""

    def __init__(self, settings: RoutingSettings, target: Target) -> None:
        self.target = target
        self._pause = settings.dual_write_pause_ms / 1000
        self._paused_until = 0.0
        url = settings.url(target)
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
        self._engine: Engine = create_engine(url, **options)
        self._async_engine: AsyncEngine = create_async_engine(url, **options)

    # --- the pause after a failure ----------------------------------------------

    def _check_pause(self) -> None:
        if time.monotonic() < self._paused_until:
            raise ApplyFailure("paused", f"{self.target.value} paused after a recent failure")

    def _failed(self, failure: ApplyFailure) -> ApplyFailure:
        if failure.error_type != "conflict":
            self._paused_until = time.monotonic() + self._pause
            log.warning("dual-write to %s failed: %s", self.target.value, failure.message)
        return failure

    # --- sync -------------------------------------------------------------------

    def apply(self, changes: Changes, origin: Target) -> None:
        """Write ``changes`` (and their intent entries) in one statement; raise ApplyFailure."""
        self._check_pause()
        params = {"payload": json.dumps(changes.payload), "xid": changes.xid}
        for attempt in (1, 2):
            try:
                with self._engine.connect() as connection:
                    connection.execute(_APPLY, params)
                return
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue  # a pooled connection from before a restart: retry once
                raise self._failed(_failure(exc, origin)) from exc
            except SQLAlchemyError as exc:
                raise self._failed(_failure(exc, origin)) from exc

    def confirm(self, xid: str) -> None:
        """The writer committed: drop its intent entries (replay would only re-copy them)."""
        with self._engine.connect() as connection:
            connection.execute(_CONFIRM, {"xid": xid})

    # --- asyncio (called through the session's greenlet) ------------------------

    async def aapply(self, changes: Changes, origin: Target) -> None:
        """:meth:`apply` on the asyncio pool."""
        self._check_pause()
        params = {"payload": json.dumps(changes.payload), "xid": changes.xid}
        for attempt in (1, 2):
            try:
                async with self._async_engine.connect() as connection:
                    await connection.execute(_APPLY, params)
                return
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue
                raise self._failed(_failure(exc, origin)) from exc
            except SQLAlchemyError as exc:
                raise self._failed(_failure(exc, origin)) from exc

    async def aconfirm(self, xid: str) -> None:
        """:meth:`confirm` on the asyncio pool."""
        async with self._async_engine.connect() as connection:
            await connection.execute(_CONFIRM, {"xid": xid})

    def dispose(self) -> None:
        """Close the sync pool."""
        self._engine.dispose()

    async def adispose(self) -> None:
        """Close both pools."""
        await self._async_engine.dispose()
        self._engine.dispose()
