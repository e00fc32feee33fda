"""One table written: mirrored through that table's own ``dw_apply_n()``, the commit's
short path; a database that numbers its tables otherwise makes it fall back to
``dbroute.apply()``, and nothing is lost or journaled either way."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.dualwrite.support import assert_converged, create_schema, write

from dbroute.dualwrite.codegen import POSITION_DIFFERS
from dbroute.dualwrite.journal import backlog
from dbroute.target import Target
from dbroute.testing import libpq_url

_POSITION = text("select ord from dbroute.tables where table_name = :t")
_SIGNATURE = "(jsonb, xid8, boolean, boolean)"


def _position(router, table, target=Target.RDS):
    with router.engine(target).connect() as conn:
        return conn.execute(_POSITION, {"t": table}).scalar_one()


def _collect(router, statement):
    """``dbroute.collect()``'s payload, keys, xid and table after ``statement`` (rolled back)."""
    with router.engine(Target.NEON).connect() as conn, conn.begin():
        conn.execute(text(statement))
        row = conn.execute(text("select * from dbroute.collect(10000)")).one()
        conn.rollback()
    return row.payload, row.n_keys, row.tx, row.only_table


def test_collect_names_the_only_table_written(dual_router):
    _, keys, _, single = _collect(dual_router, "insert into kv values (1, 1), (2, 2)")
    assert (keys, single) == (2, _position(dual_router, "kv", Target.NEON))
    both = "with c as (insert into counters values ('c', 1)) insert into kv values (3, 3)"
    _, keys, _, single = _collect(dual_router, both)
    assert (keys, single) == (2, None)


def test_a_table_function_refuses_another_tables_rows(dual_router):
    payload, _, xid, single = _collect(dual_router, "insert into kv values (1, 1)")
    other = _position(dual_router, "counters")
    assert other != single
    with (
        pytest.raises(DBAPIError) as refused,
        dual_router.engine(Target.RDS).connect() as conn,
    ):
        conn.execute(
            text(f"select dbroute.dw_apply_{other}(cast(:p as jsonb), cast(:x as xid8))"),
            {"p": payload, "x": xid},
        )
    assert isinstance(refused.value.orig, psycopg.Error)
    assert refused.value.orig.sqlstate == POSITION_DIFFERS
    assert "rows of public.kv sent to position" in str(refused.value.orig)


def _number_otherwise(router, how):
    """Make RDS disagree with Neon about where kv is (as a setup of another schema would)."""
    kv, counters = _position(router, "kv"), _position(router, "counters")
    with router.engine(Target.RDS).begin() as conn:
        if how == "swapped":
            for old, new in ((kv, "swap"), (counters, kv), ("swap", counters)):
                function = f"dbroute.dw_apply_{old}{_SIGNATURE}"
                conn.execute(text(f"alter function {function} rename to dw_apply_{new}"))
        else:
            conn.execute(text(f"drop function dbroute.dw_apply_{kv}{_SIGNATURE}"))


def _nothing_journaled(router):
    with router.engine(Target.NEON).connect() as conn:
        assert backlog(conn) == 0  # no change entry: every commit was mirrored


@pytest.mark.parametrize("how", ["swapped", "missing"])
def test_falls_back_where_tables_are_numbered_otherwise(dual_router, how):
    _number_otherwise(dual_router, how)
    write(dual_router, "u", "insert into kv values (1, 1), (2, 2)")
    write(dual_router, "u", "update kv set v = v + 10 where k = 1")
    write(dual_router, "u", "delete from kv where k = 2")
    write(dual_router, "u", "insert into counters values ('c', 1)")
    _nothing_journaled(dual_router)
    assert_converged(dual_router)
    with dual_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select k, v from kv")).all() == [(1, 11)]


@pytest.mark.asyncio
async def test_async_falls_back_too(dual_router):
    _number_otherwise(dual_router, "swapped")
    async with dual_router.async_session("u") as session, session.begin():
        await session.execute(text("insert into kv values (7, 7)"))
    _nothing_journaled(dual_router)
    assert_converged(dual_router)
    await dual_router.adispose()


_COLLECT_BEFORE_THE_UPGRADE = """
alter function dbroute.collect(integer) rename to collect_now;
create function dbroute.collect(max_rows integer default null,
                                out payload text, out n_keys integer, out tx text)
language sql as $$ select c.payload, c.n_keys, c.tx from dbroute.collect_now(max_rows) c $$;
"""


def test_a_setup_from_before_the_upgrade_takes_the_general_path(make_router):
    # Until `dbroute setup` runs again, collect() returns three columns (and the
    # capture triggers send no notices: no direct path either way).
    router = make_router(dual_write=True, dual_write_notices=False)
    create_schema(router)
    router.setup()
    with router.engine(Target.NEON).begin() as conn:
        conn.exec_driver_sql(_COLLECT_BEFORE_THE_UPGRADE)
    write(router, "u", "insert into kv values (1, 1)")
    _nothing_journaled(router)
    assert_converged(router)


def test_a_connection_that_prepared_collect_survives_a_new_setup(dual_router, dbroute_databases):
    # A process still running the previous version prepared `select * from
    # dbroute.collect(...)`: setup must not change its columns under it.
    collect = "select * from dbroute.collect(%s::integer)"
    with psycopg.connect(libpq_url(dbroute_databases.neon_url)) as conn:
        conn.execute("insert into kv values (1, 1)")
        before = conn.execute(collect, (10000,), prepare=True).fetchone()
        conn.rollback()
        dual_router.setup()
        conn.execute("insert into kv values (1, 1)")
        after = conn.execute(collect, (10000,), prepare=True).fetchone()
        conn.rollback()
    assert len(before) == len(after) == 4
    assert (before[1], after[1]) == (1, 1)
