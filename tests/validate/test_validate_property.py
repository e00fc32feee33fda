"""Property: for random contents and random edits the diff equals the brute-force set difference."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from dbroute.validate import BisectOptions, DataOptions, compare_data

from .validate_helpers import Pair

DDL = """
create table p (
    a int, b text, t text, n numeric, j jsonb, arr int[], primary key (a, b)
)
"""

keys = st.tuples(st.integers(-3, 40), st.text(alphabet='aZé ,"\\(', max_size=3))
values = st.tuples(
    st.one_of(st.none(), st.text(alphabet="xy ,\"'\\", max_size=3)),  # NULL vs '' included
    st.one_of(st.none(), st.decimals(places=2, min_value=-100, max_value=100)),
    st.one_of(
        st.none(),
        st.integers(-2, 2),
        st.text(alphabet='ab"é', max_size=2),
        st.just({"k": [1, None]}),
    ),
    st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-3, 3)), max_size=3)),
)
tables = st.dictionaries(keys, values, max_size=60)

# Small segments so that random tables exercise sampling, bisection and leaves.
OPTIONS = DataOptions(bisect=BisectOptions(leaf_rows=6, factor=3, max_segments=8))


def _load(pair: Pair, engine: Any, rows: dict[tuple[int, str], tuple[Any, ...]]) -> None:
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("truncate p")
        cursor.executemany(
            "insert into p values (%s, %s, %s, %s, %s, %s)",
            [
                (a, b, t, n, None if j is None else Jsonb(j), arr)
                for (a, b), (t, n, j, arr) in rows.items()
            ],
        )
        cursor.execute("analyze p")


def _brute_force(pair: Pair) -> tuple[set[Any], set[Any], set[Any]]:
    # Compared in Python on the values psycopg returns (str(Decimal) keeps the scale),
    # independently of PostgreSQL's row rendering.
    sql = "select a::text, b, t, n, j, arr from p"
    ours = {(a, b): (t, str(n), repr(j), arr) for a, b, t, n, j, arr in pair.rows(pair.neon, sql)}
    theirs = {(a, b): (t, str(n), repr(j), arr) for a, b, t, n, j, arr in pair.rows(pair.rds, sql)}
    changed = {k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k]}
    return set(ours) - set(theirs), set(theirs) - set(ours), changed


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(base=tables, data=st.data())
def test_diff_equals_brute_force(pair: Pair, base: dict[Any, Any], data: st.DataObject) -> None:
    pair.both(DDL.replace("create table p", "create table if not exists p"))
    edited = dict(base)
    for key in data.draw(st.lists(st.sampled_from(sorted(base)), max_size=5)) if base else []:
        edited.pop(key, None)
    edited.update(data.draw(st.dictionaries(keys, values, max_size=5)))  # inserts and updates
    _load(pair, pair.neon, base)
    _load(pair, pair.rds, edited)
    only_neon, only_rds, changed = _brute_force(pair)
    table = compare_data(pair.neon, pair.rds, OPTIONS).table("public", "p")
    assert set(table.only_in_neon) == only_neon
    assert set(table.only_in_rds) == only_rds
    assert {c.key for c in table.changed} == changed
    assert (table.rows_neon, table.rows_rds) == (len(base), len(edited))
