"""One side of a comparison: a connection inside a consistent, read-only snapshot.

Both servers must render every value identically, so each snapshot pins the
settings that change a value's text form (time zone, date and interval styles,
float digits, bytea output, money locale). Queries run under a savepoint, so a
statement timeout costs that query only: the caller splits the work and goes
on inside the same snapshot.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from dbroute.target import Target

__all__ = ["PINNED_SETTINGS", "QueryTimeout", "Side", "open_side"]

#: Session settings pinned on both servers so that ``value::text`` is identical.
PINNED_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
}

# Every setting in one round trip (a transaction per table and side sets them all).
_PIN = "select set_config(name, value, true) from unnest(%s::text[], %s::text[]) as s(name, value)"
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")
_QUERY_CANCELED = "57014"  # statement_timeout (or a cancel request)


class QueryTimeout(Exception):  # noqa: N818 - internal signal, never escapes the package
    """A query hit the statement timeout; the snapshot is still usable."""


@dataclass
class Side:
    """A database of the comparison, connected inside its snapshot."""

    target: Target
    conn: Connection
    #: More connections in the same snapshot (first pass of large tables).
    helpers: list[Side] = field(default_factory=list)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run ``sql`` (``%s`` placeholders) under a savepoint; raise :class:`QueryTimeout`."""
        savepoint = self.conn.begin_nested()
        try:
            rows = self.conn.exec_driver_sql(sql, tuple(params)).all()
        except DBAPIError as exc:
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
                raise QueryTimeout(str(exc.orig)) from exc
            raise
        savepoint.commit()
        return list(rows)


@contextlib.contextmanager
def open_side(
    engine: Engine,
    target: Target,
    *,
    read_only: bool = True,
    statement_timeout_ms: int = 0,
    helpers: int = 0,
) -> Iterator[Side]:
    """A connection to ``engine`` in a transaction with the rendering settings pinned.

    Read-only (the default): REPEATABLE READ READ ONLY, so everything read sees
    one snapshot, rolled back on exit; ``helpers`` more connections share that
    very snapshot (``pg_export_snapshot``) to scan parts of a table at once.
    Otherwise a READ COMMITTED transaction committed when the block succeeds
    (repair, sequence sync).
    """
    with contextlib.ExitStack() as stack:
        side = stack.enter_context(_transaction(engine, target, read_only, statement_timeout_ms))
        if read_only and helpers > 0:
            # Not through Side.query: a snapshot cannot be exported from a savepoint.
            try:
                snapshot = side.conn.exec_driver_sql("select pg_export_snapshot()").scalar_one()
            except DBAPIError:  # not supported here: scan with one connection
                stack.close()  # the failure aborted the transaction: start a fresh one
                side = stack.enter_context(
                    _transaction(engine, target, read_only, statement_timeout_ms)
                )
            else:
                side.helpers = [
                    stack.enter_context(
                        _transaction(engine, target, True, statement_timeout_ms, snapshot)
                    )
                    for _ in range(helpers)
                ]
        yield side


@contextlib.contextmanager
def _transaction(
    engine: Engine,
    target: Target,
    read_only: bool,
    statement_timeout_ms: int,
    snapshot: str | None = None,
) -> Iterator[Side]:
    options: dict[str, Any] = {"isolation_level": "READ COMMITTED"}
    if read_only:
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect() as base:
        conn = base.execution_options(**options)
        with conn.begin() as transaction:
            if snapshot is not None:  # must come first; a utility statement takes no parameter
                if not _SNAPSHOT_ID.fullmatch(snapshot):
                    raise ValueError(f"unexpected snapshot id {snapshot!r}")
                conn.exec_driver_sql(f"set transaction snapshot '{snapshot}'")
            settings = {**PINNED_SETTINGS, "statement_timeout": str(statement_timeout_ms)}
            conn.exec_driver_sql(_PIN, (list(settings), list(settings.values())))
            yield Side(target, conn)
            if read_only:
                transaction.rollback()
