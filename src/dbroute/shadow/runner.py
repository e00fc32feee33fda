"""Run a shadow query: its own small pool, a read-only transaction, a short timeout, a row cap.

The shadow engines are separate from the application's (created on the first
shadow, ``DBROUTE_SHADOW_POOL_SIZE`` connections each, no overflow), so a slow
or failing shadow can never take a connection the application needs. Every
connection is read-only (``BEGIN READ ONLY``): even a misclassified statement
cannot write. Rows are read through a server-side cursor, ``row_cap + 1`` at
most, so a huge result never reaches memory.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

from dbroute.shadow.results import Column, ResultSet
from dbroute.target import Target

__all__ = ["ShadowRunner"]

_CURSOR = "dbroute_shadow"


class ShadowRunner:
    """Runs statements on either database through the shadow pools."""

    def __init__(
        self, urls: Mapping[Target, URL], *, pool_size: int, statement_timeout: float, row_cap: int
    ) -> None:
        self._urls = dict(urls)
        self._pool_size = pool_size
        self._timeout_ms = str(max(1, round(statement_timeout * 1000)))
        self._connect_timeout = max(1, math.ceil(statement_timeout))
        self._pool_timeout = statement_timeout
        self._row_cap = row_cap
        self._engines: dict[Target, Engine] = {}
        self._lock = threading.Lock()
        self._active: set[psycopg.Connection[Any]] = set()
        self._closed = False

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
        engine = create_engine(
            self._urls[target],
            pool_size=self._pool_size,
            max_overflow=0,
            pool_timeout=self._pool_timeout,
            pool_pre_ping=True,
            connect_args={"connect_timeout": self._connect_timeout},
        )

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.read_only = True  # every transaction: BEGIN READ ONLY

        return engine

    @contextlib.contextmanager
    def connect(self, target: Target) -> Iterator[Connection]:
        """A read-only SQLAlchemy connection to ``target`` with the shadow timeout set."""
        with self.engine(target).connect() as connection:
            connection.exec_driver_sql(
                "select set_config('statement_timeout', %(ms)s, true)", {"ms": self._timeout_ms}
            )
            yield connection

    def run(
        self, target: Target, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None
    ) -> tuple[ResultSet, float]:
        """Run ``sql`` on ``target``: its rows (``row_cap + 1`` at most) and seconds taken."""
        proxy = self.engine(target).raw_connection()
        raw: psycopg.Connection[Any] = proxy.dbapi_connection  # type: ignore[assignment]
        with self._lock:
            self._active.add(raw)
        try:
            with raw.cursor() as cursor:
                cursor.execute(
                    "select set_config('statement_timeout', %s, true)", (self._timeout_ms,)
                )
            started = time.perf_counter()
            with raw.cursor(name=_CURSOR) as server_cursor:
                server_cursor.execute(sql, parameters)
                rows = server_cursor.fetchmany(self._row_cap + 1)
                result = server_cursor.pgresult
                tables = (
                    tuple((result.ftable(i), result.ftablecol(i)) for i in range(result.nfields))
                    if result is not None
                    else ()
                )
                columns = tuple(Column(c.name, c.type_code) for c in server_cursor.description or ())
            elapsed = time.perf_counter() - started
            raw.rollback()
        finally:
            with self._lock:
                self._active.discard(raw)
            proxy.close()  # back to the pool; the pool rolls back whatever is left
        return ResultSet(columns, rows, tables), elapsed

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
