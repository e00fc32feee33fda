"""Copy the primary's rows off the DBAPI cursor without changing what the caller receives.

The copy is taken in SQLAlchemy's ``after_cursor_execute`` event, after the
query ran and before SQLAlchemy reads the cursor, so ORM entities, Core rows
and ``text()`` results are all captured as the plain values psycopg decoded:

* sync: psycopg's client-side cursor already holds the whole result;
  ``fetchall()`` then ``scroll(0, "absolute")`` rewinds it for SQLAlchemy
  (both public psycopg API; values are decoded twice, a fresh copy for us).
* asyncio: SQLAlchemy's psycopg adapter has already fetched every row into
  its buffer; the rows are copied from it (a SQLAlchemy-internal attribute,
  checked here; when it is missing the read is skipped and counted, never
  guessed). Mutable values (JSON, arrays) are deep-copied: the caller gets
  the same objects and may change them.

Server-side (streaming) cursors are never captured.
"""

from __future__ import annotations

import copy
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult

from dbroute.shadow.results import Column, ResultSet

__all__ = ["CaptureRefused", "capture", "describe"]


class CaptureRefused(Exception):  # noqa: N818 - a reason, not an error: becomes a "skipped" count
    """The rows cannot be captured; ``reason`` is the ``dbroute.shadow.reason`` attribute."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_IMMUTABLE = (str, int, float, bytes, type(None), Decimal, date, time, timedelta, UUID)


def _raw_cursor(cursor: Any) -> tuple[Any, bool]:
    """The psycopg cursor behind ``cursor`` and whether it is SQLAlchemy's asyncio adapter."""
    if isinstance(cursor, psycopg.Cursor):
        return cursor, False
    inner = getattr(cursor, "_cursor", None)
    if isinstance(inner, psycopg.AsyncCursor) and not getattr(cursor, "server_side", True):
        return inner, True
    raise CaptureRefused("unsupported_cursor")


def describe(
    result: PGresult, encoding: str
) -> tuple[tuple[Column, ...], tuple[tuple[int, int], ...]]:
    """Column names and types, and each column's source table and column number.

    Read straight from libpq's result: cheaper than psycopg's ``description``.
    """
    fields = range(result.nfields)
    columns = tuple(
        Column((result.fname(i) or b"").decode(encoding), result.ftype(i)) for i in fields
    )
    return columns, tuple((result.ftable(i), result.ftablecol(i)) for i in fields)


def capture(cursor: Any, row_cap: int) -> ResultSet:
    """The rows of the query just run on ``cursor``; raises :class:`CaptureRefused`."""
    raw, adapted = _raw_cursor(cursor)
    if isinstance(raw, (psycopg.ServerCursor, psycopg.AsyncServerCursor)):
        raise CaptureRefused("streaming")
    result = raw.pgresult
    if result is None or result.status != ExecStatus.TUPLES_OK:
        raise CaptureRefused("no_rows_returned")
    if result.ntuples > row_cap:
        raise CaptureRefused("row_cap")
    columns, tables = describe(result, raw.connection.info.encoding)
    if adapted:
        buffered = getattr(cursor, "_rows", None)
        if buffered is None:
            raise CaptureRefused("unsupported_cursor")
        rows: list[tuple[Any, ...]] = list(buffered)
        if len(rows) != result.ntuples:  # SQLAlchemy already read some: not the whole answer
            raise CaptureRefused("already_read")
        if not all(isinstance(v, _IMMUTABLE) for row in rows for v in row):
            rows = copy.deepcopy(rows)
    elif raw.rownumber:  # already partly read: rewinding would hand rows out twice
        raise CaptureRefused("already_read")
    elif result.ntuples:
        rows = raw.fetchall()
        raw.scroll(0, "absolute")  # rewind: SQLAlchemy reads the rows next
    else:
        rows = []  # nothing to rewind (scroll(0) would raise on an empty result)
    return ResultSet(columns, rows, tables)
