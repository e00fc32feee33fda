"""Copying the primary's rows off a real psycopg cursor leaves the cursor as it was."""

from __future__ import annotations

import psycopg
import pytest

from dbroute.shadow.capture import CaptureRefused, capture
from dbroute.testing import libpq_url


@pytest.fixture
def cursor(dbroute_databases):
    url = libpq_url(dbroute_databases.neon_url)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        yield cur


def test_capture_rewinds_the_cursor(cursor):
    cursor.execute("select g as n, g * 1.5 as x from generate_series(1, 5) g")
    captured = capture(cursor, row_cap=100)
    assert [c.name for c in captured.columns] == ["n", "x"]
    assert [c.type_oid for c in captured.columns] == [23, 1700]
    assert cursor.fetchall() == list(captured.rows)  # the caller still gets every row
    assert len(captured) == 5


def test_empty_result_and_row_cap(cursor):
    cursor.execute("select 1 where false")
    assert len(capture(cursor, row_cap=100)) == 0
    assert cursor.fetchall() == []
    cursor.execute("select generate_series(1, 11)")
    with pytest.raises(CaptureRefused, match="row_cap"):
        capture(cursor, row_cap=10)
    assert len(cursor.fetchall()) == 11


def test_partly_read_cursor_is_refused(cursor):
    cursor.execute("select generate_series(1, 3)")
    cursor.fetchone()
    with pytest.raises(CaptureRefused, match="already_read"):
        capture(cursor, row_cap=100)
    assert cursor.fetchall() == [(2,), (3,)]


def test_statement_without_rows_is_refused(cursor):
    cursor.execute("create temporary table t (a int)")
    with pytest.raises(CaptureRefused, match="no_rows_returned"):
        capture(cursor, row_cap=100)
