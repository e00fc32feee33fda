"""Capturing the raw answer leaves the cursor alone; decoding it gives psycopg's values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.shadow.capture import CaptureRefused, capture, cells, decode, take
from dbroute.testing import libpq_url


@pytest.fixture(scope="module")
def connection(dbroute_servers):
    with psycopg.connect(libpq_url(dbroute_servers.neon.url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def cursor(connection):
    with connection.cursor() as cur:
        yield cur


def test_capture_leaves_the_cursor_and_decodes_to_the_same_rows(cursor):
    cursor.execute("select g as n, g * 1.5 as x, null::text as t from generate_series(1, 5) g")
    decoded = decode(capture(cursor, row_cap=100))
    assert [c.name for c in decoded.columns] == ["n", "x", "t"]
    assert [c.type_oid for c in decoded.columns] == [23, 1700, 25]
    assert len(decoded) == 5
    assert cursor.fetchall() == list(decoded.rows)  # the caller still gets every row


def test_a_taken_result_outlives_the_cursor_and_its_connection(dbroute_servers):
    # The hook takes the result on the caller's path and the sender copies it
    # later: by then the cursor ran other queries, and the connection may be closed.
    with psycopg.connect(libpq_url(dbroute_servers.neon.url)) as conn, conn.cursor() as cur:
        cur.execute("select g, repeat('x', g) from generate_series(1, 4) g")
        taken = take(cur, row_cap=100)
        assert cur.fetchall() == [(g, "x" * g) for g in range(1, 5)]
        cur.execute("select 'another query'")
    assert conn.closed
    assert decode(cells(taken)).rows == [(g, "x" * g) for g in range(1, 5)]


def test_partly_read_cursor_is_captured_whole(cursor):
    cursor.execute("select generate_series(1, 3)")
    assert cursor.fetchone() == (1,)
    assert decode(capture(cursor, row_cap=100)).rows == [(1,), (2,), (3,)]
    assert cursor.fetchall() == [(2,), (3,)]


def test_empty_result_no_columns_and_row_cap(cursor):
    cursor.execute("select 1 where false")
    assert len(decode(capture(cursor, row_cap=100))) == 0
    cursor.execute("select from generate_series(1, 2)")
    assert decode(capture(cursor, row_cap=100)).rows == [(), ()]
    cursor.execute("select generate_series(1, 11)")
    with pytest.raises(CaptureRefused, match="row_cap"):
        capture(cursor, row_cap=10)
    assert len(cursor.fetchall()) == 11


def test_statement_without_rows_is_refused(cursor):
    cursor.execute("create temporary table t (a int)")
    with pytest.raises(CaptureRefused, match="no_rows_returned"):
        capture(cursor, row_cap=100)


def test_server_side_cursor_is_refused(connection):
    with connection.transaction(), connection.cursor(name="streaming") as cursor:
        cursor.execute("select generate_series(1, 3)")
        with pytest.raises(CaptureRefused, match="streaming"):
            capture(cursor, row_cap=100)


def test_binary_results_decode_too(connection):
    with connection.cursor(binary=True) as cursor:
        cursor.execute("select 1.5::numeric, 'x'::text, '2024-01-01'::date")
        assert decode(capture(cursor, row_cap=10)).rows == [
            (Decimal("1.5"), "x", dt.date(2024, 1, 1))
        ]


# PostgreSQL text (and jsonb's keys) cannot hold NUL.
_chars = st.characters(blacklist_characters="\x00", codec="utf-8")
_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(_chars),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, max_value=10**12, min_value=-(10**12)
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.dates(),
    st.lists(st.integers(-1000, 1000), max_size=4),
    st.dictionaries(st.text(_chars, max_size=5), st.integers(-5, 5), max_size=3),
)
_TYPES = {
    int: "int8",
    str: "text",
    Decimal: "numeric",
    float: "float8",
    bool: "bool",
    dt.datetime: "timestamptz",
    dt.date: "date",
    list: "int8[]",
    dict: "jsonb",
}


@settings(max_examples=60, deadline=None)
@given(st.lists(_values, min_size=1, max_size=6))
def test_decoding_raw_cells_agrees_with_psycopg(connection, values):
    """Property: what the worker decodes from the raw cells is what psycopg gave the caller."""
    casts = [_TYPES.get(type(v), "text") for v in values]
    params = [psycopg.types.json.Jsonb(v) if isinstance(v, dict) else v for v in values]
    sql = "select " + ", ".join(f"%s::{cast}" for cast in casts)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        captured = capture(cursor, row_cap=10)
        assert captured[1] == _libpq_cells(cursor.pgresult)  # the bytes libpq holds, unchanged
        assert list(decode(captured).rows) == cursor.fetchall()


def _libpq_cells(result):
    return [
        tuple(result.get_value(row, column) for column in range(result.nfields))
        for row in range(result.ntuples)
    ]


@pytest.mark.parametrize("binary", [False, True])
def test_cells_are_libpqs_bytes_in_either_format(connection, binary):
    sql = "select g, null::int, '\\x00ff'::bytea, 'é' from generate_series(1, 3) g"
    with connection.cursor(binary=binary) as cursor:
        cursor.execute(sql)
        meta, rows = cells(cursor.pgresult)
        assert [m[2] for m in meta] == [int(binary)] * 4
        assert rows == _libpq_cells(cursor.pgresult)
        assert rows[0][1] is None
        assert len(rows) == 3


_cells = st.one_of(st.none(), st.integers(-5, 5).map(lambda n: str(n).encode()))


@st.composite
def _raw_pairs(draw):
    """Two raw answers of the same shape (int4 columns) whose cells often coincide."""
    width = draw(st.integers(0, 3))
    count = draw(st.integers(0, 5))
    meta = tuple((f"c{i}".encode(), 23, 0, 0, 0) for i in range(width))
    row = st.tuples(*[_cells] * width)
    first = draw(st.lists(row, min_size=count, max_size=count))
    if draw(st.booleans()):  # the same rows, maybe shuffled
        second = [first[r] for r in draw(st.permutations(range(count)))]
    else:
        second = draw(st.lists(row, min_size=count, max_size=count))
    return (meta, first), (meta, second)


@settings(max_examples=300, deadline=None)
@given(_raw_pairs(), st.booleans())
def test_raw_equality_is_sound_and_symmetric(pair, ordered):
    """Property: byte-equal answers are equal answers (the worker's shortcut changes no verdict)."""
    from dbroute.shadow.capture import raw_equal
    from dbroute.shadow.compare import compare_results

    a, b = pair
    same = raw_equal(a, b, ordered=ordered)
    assert same == raw_equal(b, a, ordered=ordered)
    verdict = compare_results(decode(a), decode(b), ordered=ordered)
    assert same == verdict.equal  # int4 text has one spelling per value: exact agreement
