"""Data diff on real PostgreSQL: exactly the planted differences, nothing else."""

from __future__ import annotations

import pytest

from dbroute.target import Target
from dbroute.validate import BisectOptions, DataOptions, compare_data
from dbroute.validate.snapshot import open_side

from .validate_helpers import Pair

TYPES_DDL = """
create table things (
    id      bigint primary key,
    label   text,
    amount  numeric(12, 3),
    ratio   float8,
    doc     json,
    docb    jsonb,
    tags    text[],
    nums    int[],
    at      timestamptz,
    day     date,
    span    interval,
    blob    bytea,
    flag    boolean,
    uid     uuid
);
insert into things
select g, 'label ' || g, g * 1.5, g / 7.0, json_build_object('g', g), jsonb_build_object('g', g),
       array['a', 'b,' || g], array[g, g + 1],
       timestamptz '2024-01-01 00:00+00' + g * interval '1 hour',
       date '2024-01-01' + g, g * interval '1 minute', decode(md5(g::text), 'hex'), g % 2 = 0,
       md5(g::text)::uuid
from generate_series(1, 300) g;
"""

# column -> SQL new value planted on RDS for one row each
CHANGES = {
    "label": "''",  # NULL vs empty string is planted separately below
    "amount": "amount + 0.001",
    "ratio": "ratio + 1e-12",
    "doc": """'{"g": -1}'::json""",
    "docb": """docb || '{"x": null}'""",
    "tags": "array['a', 'b']",
    "nums": "array[]::int[]",
    "at": "at + interval '1 microsecond'",
    "day": "day + 1",
    "span": "span + interval '1 second'",
    "blob": "blob || '\\x00'::bytea",
    "flag": "not flag",
    "uid": "gen_random_uuid()",
}


def test_identical_databases_have_no_differences(pair: Pair) -> None:
    pair.both(TYPES_DDL)
    report = compare_data(pair.neon, pair.rds)
    assert report.clean
    table = report.table("public", "things")
    assert (table.rows_neon, table.rows_rds) == (300, 300)
    assert table.differences == 0
    assert not table.pending


def test_planted_differences_are_found_exactly(pair: Pair) -> None:
    pair.both(TYPES_DDL)
    planted: dict[str, tuple[str, ...]] = {}
    for n, (column, value) in enumerate(CHANGES.items(), start=10):
        pair.run(pair.rds, f"update things set {column} = {value} where id = {n}")
        planted[str(n)] = (column,)
    # NULL on one side, the empty string on the other: a difference.
    pair.run(pair.neon, "update things set label = null where id = 100")
    pair.run(pair.rds, "update things set label = '' where id = 100")
    planted["100"] = ("label",)
    pair.run(pair.rds, "delete from things where id in (5, 250)")
    pair.run(pair.rds, "insert into things (id) values (1000), (-3)")
    report = compare_data(pair.neon, pair.rds)
    table = report.table("public", "things")
    assert table.only_in_neon == [("250",), ("5",)]
    assert table.only_in_rds == [("-3",), ("1000",)]
    assert {c.key[0]: c.columns for c in table.changed} == planted
    assert (table.rows_neon, table.rows_rds) == (300, 300)
    assert not report.clean
    assert report.differences == 4 + len(planted)


def test_composite_unicode_keys(pair: Pair) -> None:
    pair.both(
        """
        create table names (tenant text, name text, n int, primary key (tenant, name));
        insert into names select 'tenant-' || (g % 7), 'ñame-' || g || '-Ω✓', g
        from generate_series(1, 500) g;
        """
    )
    pair.run(pair.rds, "update names set n = -1 where tenant = 'tenant-3' and name = 'ñame-3-Ω✓'")
    pair.run(pair.rds, "insert into names values ('tenant-1', 'é\"quoted, comma', 1)")
    pair.run(pair.neon, "delete from names where name = 'ñame-500-Ω✓'")
    table = compare_data(pair.neon, pair.rds).table("public", "names")
    assert table.key_columns == ("tenant", "name")
    assert [c.key for c in table.changed] == [("tenant-3", "ñame-3-Ω✓")]
    assert table.changed[0].columns == ("n",)
    assert table.only_in_rds == [("tenant-1", 'é"quoted, comma'), ("tenant-3", "ñame-500-Ω✓")]
    assert table.only_in_neon == []


@pytest.mark.parametrize(
    ("ddl", "key"),
    [
        ("id bigint primary key, g int", "g * 3"),
        ("id text primary key, g int", "md5(g::text)"),
        ("a int, id int, g int, primary key (a, id)", "g % 13, g"),
    ],
    ids=["bigint", "text", "composite"],
)
def test_bisection_over_many_segments(pair: Pair, ddl: str, key: str) -> None:
    pair.both(
        f"create table big ({ddl}, v text);"
        f" insert into big select {key}, g, md5(g::text) from generate_series(1, 20000) g;"
        " analyze big;"
    )
    changed, deleted = (17, 4000, 12345), (1, 19999)
    pair.run(pair.rds, f"update big set v = 'x' where g in {changed}")
    pair.run(pair.rds, f"delete from big where g in {deleted}")
    key_text = "id::text" if "a int" not in ddl else "a::text, id::text"
    expect_changed = sorted(
        pair.rows(pair.neon, f"select {key_text} from big where g in {changed}")
    )
    expect_deleted = sorted(
        pair.rows(pair.neon, f"select {key_text} from big where g in {deleted}")
    )
    options = DataOptions(bisect=BisectOptions(leaf_rows=50, factor=4, max_segments=16))
    table = compare_data(pair.neon, pair.rds, options).table("public", "big")
    assert [c.key for c in table.changed] == expect_changed
    assert all(c.columns == ("v",) for c in table.changed)
    assert table.only_in_neon == expect_deleted
    assert not table.only_in_rds
    assert table.rows_downloaded < 2000  # bisection, not a full download
    assert table.queries > 10


def test_first_pass_split_over_connections_sharing_one_snapshot(pair: Pair) -> None:
    pair.both(
        "create table par (id int primary key, v text);"
        "insert into par select g, md5(g::text) from generate_series(1, 20000) g; analyze par;"
    )
    pair.run(pair.rds, "update par set v = '' where id in (3, 9999, 20000)")
    pair.run(pair.neon, "delete from par where id = 15000")
    options = DataOptions(
        parallel=3, parallel_min_rows=0, bisect=BisectOptions(leaf_rows=100, max_segments=64)
    )
    table = compare_data(pair.neon, pair.rds, options).table("public", "par")
    assert [c.key for c in table.changed] == [("20000",), ("3",), ("9999",)]
    assert table.only_in_rds == [("15000",)]
    assert (table.rows_neon, table.rows_rds) == (19999, 20000)


def test_helper_connections_share_the_exported_snapshot(pair: Pair) -> None:
    pair.both("create table snap (id int primary key)")
    with open_side(pair.neon, Target.NEON, helpers=2) as side:
        assert len(side.helpers) == 2  # the export must not run inside a savepoint
        pair.run(pair.neon, "insert into snap values (1)")  # committed after the snapshot
        seen = [s.query("select count(*) from snap")[0][0] for s in (side, *side.helpers)]
    assert seen == [0, 0, 0]
    assert pair.rows(pair.neon, "select count(*) from snap") == [(1,)]
