"""Copy the primary's answer off the DBAPI cursor, as libpq holds it, without decoding it.

The dialect's ``do_execute`` hook (:mod:`dbroute.shadow.hooks`) takes libpq's
result (``cursor.pgresult``) after the query ran and before SQLAlchemy reads a row;
the shadow sender thread copies its :func:`cells` later, as raw bytes, so:

* the caller's cursor is not touched: nothing is fetched, rewound or
  decoded twice; ORM entities, Core rows and ``text()`` results, sync or
  asyncio (SQLAlchemy's psycopg adapter keeps the inner cursor's result), are
  captured the same way;
* the expensive part, turning bytes into Python values, happens in the
  shadow worker process (:func:`decode`), off the application's CPU and GIL.

Server-side (streaming) cursors are never captured: their result is one batch.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult

from dbroute.shadow.results import Column, ResultSet

__all__ = ["CaptureRefused", "ColumnMeta", "RawRows", "capture", "decode", "raw_equal"]


class CaptureRefused(Exception):  # noqa: N818 - a reason, not an error: becomes a "skipped" count
    """The rows cannot be captured; ``reason`` is the ``dbroute.shadow.reason`` attribute."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: One column as libpq describes it: name (raw bytes), type OID, format (0 text, 1 binary),
#: source table OID and column number (0, 0 when computed).
ColumnMeta = tuple[bytes | None, int, int, int, int]
#: A result as libpq returned it: its columns, its row count and its row-major raw cells
#: (``None``: NULL). Plain tuples: they are pickled on the caller's path, where every
#: microsecond counts.
RawRows = tuple[tuple[ColumnMeta, ...], int, list[bytes | None]]


def _pgresult(cursor: Any) -> PGresult | None:
    """The libpq result behind ``cursor`` (psycopg's, or SQLAlchemy's asyncio adapter's)."""
    raw = cursor if isinstance(cursor, psycopg.Cursor) else getattr(cursor, "_cursor", None)
    if isinstance(raw, (psycopg.ServerCursor, psycopg.AsyncServerCursor)):
        raise CaptureRefused("streaming")
    if not isinstance(raw, (psycopg.Cursor, psycopg.AsyncCursor)):
        raise CaptureRefused("unsupported_cursor")
    if getattr(cursor, "server_side", False):  # the adapter streams through a named cursor
        raise CaptureRefused("streaming")
    return raw.pgresult


def capture(cursor: Any, row_cap: int) -> RawRows:
    """The raw answer of the query just run on ``cursor``; raises :class:`CaptureRefused`."""
    return cells(take(cursor, row_cap))


def take(cursor: Any, row_cap: int) -> PGresult:
    """The libpq result of the query just run on ``cursor``; raises :class:`CaptureRefused`.

    Holding it is enough: psycopg never clears a result, it only lets go of it
    at the cursor's next query, and a libpq result is immutable and not tied to
    its connection, so :func:`cells` can copy it later, on another thread.
    """
    result = _pgresult(cursor)
    if result is None or result.status != ExecStatus.TUPLES_OK:
        raise CaptureRefused("no_rows_returned")
    if result.ntuples > row_cap:
        raise CaptureRefused("row_cap")
    return result


def cells(result: PGresult) -> RawRows:
    """``result``'s columns and raw cells, as :data:`RawRows`."""
    ntuples = result.ntuples
    fields = range(result.nfields)
    name, oid, fmt, table, column = (
        result.fname,
        result.ftype,
        result.fformat,
        result.ftable,
        result.ftablecol,
    )
    meta = tuple([(name(i), oid(i), fmt(i), table(i), column(i)) for i in fields])
    value = result.get_value
    return meta, ntuples, [value(row, field) for row in range(ntuples) for field in fields]


def decode(raw: RawRows, encoding: str = "utf-8") -> ResultSet:
    """``raw`` as Python values, by psycopg's default loaders (as the shadow's rows are)."""
    meta, ntuples, cells = raw
    columns = tuple(Column((name or b"").decode(encoding), oid) for name, oid, *_ in meta)
    tables = tuple((table, column) for *_, table, column in meta)
    transformer = Transformer()
    loads = [transformer.get_loader(oid, pq.Format(fmt)).load for _, oid, fmt, _, _ in meta]
    width = len(loads)
    if not width:  # ``select`` of no columns: empty rows
        return ResultSet(columns, [()] * ntuples, tables)
    rows = [
        tuple(
            None if cell is None else load(cell)
            for load, cell in zip(loads, cells[start : start + width], strict=True)
        )
        for start in range(0, ntuples * width, width)
    ]
    return ResultSet(columns, rows, tables)


def raw_equal(a: RawRows, b: RawRows, *, ordered: bool) -> bool:
    """Whether two answers are byte for byte the same (in order, or as multisets of rows).

    Same columns, types, formats and bytes mean same values, so a match needs
    no decoding; different bytes may still be equal values (``1.0``/``1.00``,
    another ``TimeZone``...): :func:`decode` and compare them then.
    """
    meta_a, rows_a, cells_a = a
    meta_b, rows_b, cells_b = b
    if rows_a != rows_b or [m[:3] for m in meta_a] != [m[:3] for m in meta_b]:
        return False
    if ordered or rows_a < 2:
        return cells_a == cells_b
    width = len(meta_a)
    if not width:
        return True
    return _sorted_rows(cells_a, width) == _sorted_rows(cells_b, width)


def _sorted_rows(cells: list[bytes | None], width: int) -> list[tuple[bytes | None, ...]]:
    rows = [tuple(cells[i : i + width]) for i in range(0, len(cells), width)]
    # NULL sorts apart from every value (None and bytes do not compare).
    rows.sort(key=lambda row: tuple((c is None, c or b"") for c in row))
    return rows
