"""Run a shadow query: its own small pool, a read-only transaction, a short timeout, a row cap.

The shadow engines are separate from the application's (created on the first
shadow, ``DBROUTE_SHADOW_POOL_SIZE`` connections each, no overflow), so a slow
or failing shadow can never take a connection the application needs. One
shadow is three round trips::

    BEGIN READ ONLY; SET LOCAL statement_timeout = ...   -- even a misjudged statement cannot write
    DECLARE dbroute_shadow NO SCROLL CURSOR FOR <the primary's SQL, same parameters>
    FETCH <row_cap + 1> FROM dbroute_shadow; ROLLBACK    -- a huge result never reaches memory

Session-level settings are never changed, so the pools also work behind a
transaction-mode pooler (Neon's PgBouncer). (psycopg's pipeline mode would
save a round trip but costs more CPU than it saves, and CPU in the worker is
what the application's threads feel.)
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL

from dbroute.shadow.capture import RawRows, capture, decode
from dbroute.shadow.results import ResultSet
from dbroute.target import Target

__all__ = ["ShadowRunner"]

_CURSOR = "dbroute_shadow"
_TIMEOUT = "select set_config('statement_timeout', %(ms)s, true)"


def _abort(raw: psycopg.Connection[Any], proxy: Any) -> None:
    """End the failed shadow's transaction; a connection that cannot is discarded."""
    try:
        raw.execute("rollback")
    except Exception:  # broken connection: the pool must not hand it out again
        proxy.invalidate()


class ShadowRunner:
    """Runs statements on either database through the shadow pools."""

    def __init__(
        self,
        urls: Mapping[Target, URL | str],
        *,
        pool_size: int,
        statement_timeout: float,
        row_cap: int,
    ) -> None:
        self._urls = dict(urls)
        self._pool_size = pool_size
        self._timeout_ms = str(max(1, round(statement_timeout * 1000)))
        # Our own integers only: simple-query statements, one round trip each.
        self._begin = f"begin read only; set local statement_timeout = {self._timeout_ms}".encode()
        self._row_cap = row_cap
        self._fetch = f"fetch {row_cap + 1} from {_CURSOR}; rollback".encode()
        self._connect_timeout = max(1, math.ceil(statement_timeout))
        self._pool_timeout = statement_timeout
        self._engines: dict[Target, Engine] = {}
        self._lock = threading.Lock()
        self._active: set[psycopg.Connection[Any]] = set()

    def engine(self, target: Target) -> Engine:
        """The shadow engine of ``target``, created on first use."""
        engine = self._engines.get(target)
        if engine is None:
            with self._lock:
                engine = self._engines.get(target)
                if engine is None:
                    engine = self._create(target)
                    self._engines[target] = engine
        return engine

    def _create(self, target: Target) -> Engine:
        # AUTOCOMMIT: psycopg sends no BEGIN of its own; each shadow sends BEGIN READ ONLY.
        return create_engine(
            self._urls[target],
            isolation_level="AUTOCOMMIT",
            pool_size=self._pool_size,
            max_overflow=0,
            pool_timeout=self._pool_timeout,
            # No pre-ping (a round trip per shadow): a dead connection fails one
            # shadow, which counts as an error and discards the connection.
            pool_pre_ping=False,
            connect_args={"connect_timeout": self._connect_timeout},
        )

    @contextlib.contextmanager
    def connect(self, target: Target) -> Iterator[Connection]:
        """A SQLAlchemy connection to ``target`` in a read-only transaction with the timeout."""
        with self.engine(target).connect() as connection:
            connection.exec_driver_sql("begin read only")
            try:
                connection.exec_driver_sql(_TIMEOUT, {"ms": self._timeout_ms})
                yield connection
            finally:
                connection.exec_driver_sql("rollback")

    def run(
        self, target: Target, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None
    ) -> tuple[ResultSet, float]:
        """Run ``sql`` on ``target``: its rows (``row_cap + 1`` at most) and seconds taken."""
        rows, elapsed = self.run_raw(target, sql, parameters)
        return decode(rows), elapsed

    def run_raw(
        self, target: Target, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None
    ) -> tuple[RawRows, float]:
        """:meth:`run`, with the rows as libpq returned them (decoded only when needed)."""
        proxy = self.engine(target).raw_connection()
        raw: psycopg.Connection[Any] = proxy.dbapi_connection  # type: ignore[assignment]
        with self._lock:
            self._active.add(raw)
        try:
            try:
                with raw.cursor() as cursor:
                    cursor.execute(self._begin)
                    started = time.perf_counter()
                    cursor.execute(f"declare {_CURSOR} no scroll cursor for {sql}", parameters)
                    cursor.execute(self._fetch)  # the FETCH's rows are the first result
                    elapsed = time.perf_counter() - started
                    rows = capture(cursor, self._row_cap + 1)
            except Exception:
                _abort(raw, proxy)
                raise
        finally:
            with self._lock:
                self._active.discard(raw)
            proxy.close()  # back to the pool (or discarded, when invalidated)
        return rows, elapsed

    def cancel_running(self) -> None:
        """Ask the servers to cancel every shadow query in flight (shutdown)."""
        with self._lock:
            active = list(self._active)
        for raw in active:
            with contextlib.suppress(Exception):  # already finished or broken: nothing to cancel
                raw.cancel_safe(timeout=1)

    def dispose(self) -> None:
        """Close the shadow pools."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose()
