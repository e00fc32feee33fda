"""The shadow runner: one round trip through libpq's pipeline (or three through a cursor).

Both ways must run the primary's statement exactly as psycopg would, read-only,
within the timeout and the row cap, and leave the pooled connection reusable
(or discarded) whatever the statement did.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dbroute import Target
from dbroute.shadow.capture import decode
from dbroute.shadow.runner import PIPELINED, ShadowRunner
from dbroute.testing import libpq_url

ROW_CAP = 5


@pytest.fixture(params=["pipelined", "cursor"])
def runner(request, dbroute_databases):
    urls = {Target.NEON: dbroute_databases.neon_url, Target.RDS: dbroute_databases.rds_url}
    runner = ShadowRunner(urls, pool_size=1, statement_timeout=0.5, row_cap=ROW_CAP)
    runner.pipelined = request.param == "pipelined"
    yield runner
    runner.dispose()


@pytest.fixture
def rds(dbroute_databases):
    with psycopg.connect(libpq_url(dbroute_databases.rds_url), autocommit=True) as conn:
        yield conn


def rows(runner, sql, parameters=None):
    raw, seconds = runner.run_raw(Target.RDS, sql, parameters)
    assert seconds > 0
    return decode(raw).rows


def test_the_installed_psycopg_takes_one_round_trip():
    # psycopg 3.2+ with its own libpq (14+): a silent fallback would cost ~2x the CPU.
    assert PIPELINED


@pytest.mark.parametrize(
    ("sql", "parameters", "expected"),
    [
        ("select %(a)s::int + 1 as n, %(b)s::text as t", {"a": 41, "b": "x"}, [(42, "x")]),
        ("select %s::int * 2, %s::text", (21, "%"), [(42, "%")]),
        ("select '100%' as pct", None, [("100%",)]),  # no parameters: % is not a placeholder
        ("select '100%%' as pct, %(a)s::int", {"a": 1}, [("100%", 1)]),
        ("select g from generate_series(1, 3) g where false", None, []),
    ],
)
def test_statements_and_parameters_as_psycopg_sends_them(runner, sql, parameters, expected):
    assert rows(runner, sql, parameters) == expected


_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=20),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=3, max_value=10**9, min_value=-(10**9)
    ),
    st.dates(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.booleans(),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_values, min_size=1, max_size=4))
def test_the_shadow_answers_as_psycopg_would(runner, rds, values):
    """Property: the rows (and their types) are the ones a psycopg cursor gets."""
    sql = "select " + ", ".join(f"%(v{i})s as c{i}" for i in range(len(values)))
    parameters = {f"v{i}": value for i, value in enumerate(values)}
    with rds.cursor() as cursor:
        cursor.execute(sql, parameters)
        expected = cursor.fetchall()
        types = [column.type_code for column in cursor.description]
    raw, _ = runner.run_raw(Target.RDS, sql, parameters)
    assert decode(raw).rows == expected
    assert [column.type_oid for column in decode(raw).columns] == types


def test_row_cap_plus_one_at_most(runner):
    assert len(rows(runner, "select generate_series(1, 100)")) == ROW_CAP + 1


def test_writes_are_refused_and_leave_nothing(runner, rds):
    rds.execute("create sequence s")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        rows(runner, "select nextval('s')")
    assert rds.execute("select last_value, is_called from s").fetchone() == (1, False)
    assert rows(runner, "select 1") == [(1,)]  # the same pooled connection, usable


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("select pg_sleep(5)", psycopg.errors.QueryCanceled),  # the shadow's own timeout
        ("select from no_such_table", psycopg.errors.UndefinedTable),
        ("selec 1", psycopg.errors.SyntaxError),
        ("select 1/0", psycopg.errors.DivisionByZero),
    ],
)
def test_a_failed_statement_raises_and_the_connection_is_reusable(runner, sql, error):
    with pytest.raises(error):
        rows(runner, sql)
    with runner.engine(Target.RDS).connect() as conn:  # the pool's one connection: left clean
        status = conn.connection.dbapi_connection.info.transaction_status
        assert status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute(text("select count(*) from pg_cursors")).scalar() == 0
    assert rows(runner, "select 1") == [(1,)]


def test_a_connection_killed_between_shadows_costs_one_error(runner, rds):
    assert rows(runner, "select 1") == [(1,)]
    rds.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    )
    with pytest.raises(psycopg.OperationalError):
        rows(runner, "select 1")
    assert rows(runner, "select 2") == [(2,)]  # a new connection


def test_decimal_and_text_bytes_are_the_servers(runner):
    raw, _ = runner.run_raw(Target.RDS, "select 1.50::numeric, 'é'::text", None)
    _, found = raw
    assert found == [(b"1.50", "é".encode())]
    assert decode(raw).rows == [(Decimal("1.50"), "é")]
