"""Run a shadow query: its own small pool, a read-only transaction, a short timeout, a row cap.

The shadow engines are separate from the application's (created on the first
shadow, ``DBROUTE_SHADOW_POOL_SIZE`` connections each, no overflow), so a slow
or failing shadow can never take a connection the application needs. One
shadow is five statements::

    BEGIN READ ONLY                                     -- even a misjudged statement cannot write
    SET LOCAL statement_timeout = ...
    DECLARE dbroute_shadow NO SCROLL CURSOR FOR <the primary's SQL, same parameters>
    FETCH <row_cap + 1> FROM dbroute_shadow             -- a huge result never reaches memory
    ROLLBACK

sent in one round trip through libpq's pipeline mode, straight on psycopg's
``pgconn``: the statements, parameters and results are psycopg's own, without
a cursor's bookkeeping for each (measured, one thread: 95 us of CPU a shadow,
against 170 us through psycopg's ``Connection.pipeline()`` and 190-205 us for
three round trips through a cursor). The shadow's time is then the whole
round trip's, its opening and closing statements included (a few server
microseconds). Where psycopg cannot (a libpq without pipeline mode, or a
psycopg whose internals moved), the same statements go through a cursor in
three round trips.

Session-level settings are never changed, so the pools also work behind a
transaction-mode pooler (Neon's PgBouncer). Prepared statements are off for
these connections: psycopg forgets its prepared statements at every ROLLBACK,
and re-preparing cost a round trip every few shadows.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import generators, pq
from psycopg.adapt import Transformer
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL

from dbroute.shadow.capture import CaptureRefused, RawRows, capture, cells, decode
from dbroute.shadow.results import ResultSet
from dbroute.target import Target

__all__ = ["ShadowRunner"]

_CURSOR = "dbroute_shadow"
_TIMEOUT = "select set_config('statement_timeout', %(ms)s, true)"

#: Whether shadows take one round trip (see the module docstring).
PIPELINED: bool
try:  # psycopg's own conversion of a query and its parameters, as its cursors send them
    from psycopg._queries import PostgresQuery

    PIPELINED = psycopg.capabilities.has_pipeline()
except ImportError:  # a psycopg that moved it: three round trips instead
    PIPELINED = False


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
        # Our own integers only: no parameters to bind.
        self._opening = (
            b"begin read only",
            f"set local statement_timeout = {self._timeout_ms}".encode(),
        )
        self._row_cap = row_cap
        self._closing = (f"fetch {row_cap + 1} from {_CURSOR}".encode(), b"rollback")
        self._statements = len(self._opening) + 1 + len(self._closing) + 1  # and the sync
        #: One round trip a shadow (see the module docstring); ``False`` falls back to three.
        self.pipelined = PIPELINED
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
            # No prepared statements: psycopg drops them at each shadow's ROLLBACK.
            connect_args={"connect_timeout": self._connect_timeout, "prepare_threshold": None},
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
                run = self._pipelined if self.pipelined else self._through_cursor
                rows, elapsed = run(
                    raw, f"declare {_CURSOR} no scroll cursor for {sql}", parameters
                )
            except Exception:
                _abort(raw, proxy)
                raise
        finally:
            with self._lock:
                self._active.discard(raw)
            proxy.close()  # back to the pool (or discarded, when invalidated)
        return rows, elapsed

    def _pipelined(
        self, raw: psycopg.Connection[Any], declare: str, parameters: Any
    ) -> tuple[RawRows, float]:
        query = PostgresQuery(Transformer(raw))
        query.convert(declare, parameters)
        pgconn = raw.pgconn
        started = time.perf_counter()
        pgconn.enter_pipeline_mode()
        try:
            for statement in self._opening:
                pgconn.send_query_params(statement, None)
            pgconn.send_query_params(
                query.query, query.params, param_types=query.types, param_formats=query.formats
            )
            for statement in self._closing:
                pgconn.send_query_params(statement, None)
            pgconn.pipeline_sync()
            raw.wait(generators.send(pgconn))
            # Each statement's results, then the sync's.
            answers = [raw.wait(generators.fetch_many(pgconn)) for _ in range(self._statements)]
            pgconn.exit_pipeline_mode()
        except BaseException:
            with contextlib.suppress(Exception):
                pgconn.exit_pipeline_mode()
            if pgconn.pipeline_status != pq.PipelineStatus.OFF:
                raw.close()  # results we could not read: the pool must not reuse it
            raise
        elapsed = time.perf_counter() - started
        for answer in answers:
            for result in answer:
                if result.status == pq.ExecStatus.FATAL_ERROR:  # the first failure, as a cursor
                    raise psycopg.errors.error_from_result(result, encoding=raw.info.encoding)
        (fetched,) = answers[len(self._opening) + 1]
        if fetched.status != pq.ExecStatus.TUPLES_OK:  # as capture() would refuse it
            raise CaptureRefused("no_rows_returned")
        return cells(fetched), elapsed

    def _through_cursor(
        self, raw: psycopg.Connection[Any], declare: str, parameters: Any
    ) -> tuple[RawRows, float]:
        with raw.cursor() as cursor:
            cursor.execute(b";".join(self._opening))
            started = time.perf_counter()
            cursor.execute(declare, parameters)
            cursor.execute(b";".join(self._closing))  # the FETCH's rows are the first result
            elapsed = time.perf_counter() - started
            return capture(cursor, self._row_cap + 1), elapsed

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
