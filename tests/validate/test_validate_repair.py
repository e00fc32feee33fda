"""Repair then validate: equal. Dry runs write nothing."""

from __future__ import annotations

import pytest

from dbroute.errors import RepairError
from dbroute.target import Target
from dbroute.validate import compare_data, repair

from .validate_helpers import Pair

DDL = """
create table items (
    id   int generated always as identity primary key,
    name text,
    doc  jsonb,
    tags text[],
    at   timestamptz,
    blob bytea,
    twice int generated always as (id * 2) stored
);
insert into items (name, doc, tags, at, blob)
select 'item ' || g, jsonb_build_object('g', g), array['x', g::text],
       '2025-01-01 10:00+02', '\\x01ff'
from generate_series(1, 200) g;
create table links (a text, b text, weight numeric, primary key (a, b));
insert into links select 'a' || g, 'b' || g, g / 3.0 from generate_series(1, 50) g;
"""


def _plant(pair: Pair) -> None:
    pair.run(pair.rds, "update items set name = null, doc = '[]', blob = '' where id = 7")
    pair.run(pair.rds, "delete from items where id in (3, 150)")
    pair.run(pair.rds, "insert into items (id, name) overriding system value values (999, 'x')")
    pair.run(pair.rds, "update links set weight = 0 where a = 'a5'")
    pair.run(pair.rds, "insert into links values ('ü', 'ß', 1)")


def test_repair_makes_the_target_equal(pair: Pair) -> None:
    pair.both(DDL)
    _plant(pair)
    report = compare_data(pair.neon, pair.rds)
    assert report.differences == 6
    result = repair(pair.neon, pair.rds, report, Target.NEON, apply=True, batch_size=2)
    assert result.verified
    assert result.upserts == 4
    assert result.deletes == 2
    assert compare_data(pair.neon, pair.rds).clean


def test_repair_from_rds_writes_neon(pair: Pair) -> None:
    pair.both(DDL)
    _plant(pair)
    report = compare_data(pair.neon, pair.rds)
    result = repair(pair.neon, pair.rds, report, Target.RDS, apply=True)
    assert result.target is Target.NEON
    assert result.verified
    assert pair.rows(pair.neon, "select name from items where id = 999") == [("x",)]
    assert compare_data(pair.neon, pair.rds).clean


def test_dry_run_writes_nothing(pair: Pair) -> None:
    pair.both(DDL)
    _plant(pair)
    report = compare_data(pair.neon, pair.rds)
    plan = repair(pair.neon, pair.rds, report, Target.NEON)
    assert not plan.applied
    assert not plan.verified
    assert (plan.upserts, plan.deletes) == (4, 2)
    assert compare_data(pair.neon, pair.rds).differences == 6


def test_repair_refuses_when_rows_keep_differing(pair: Pair) -> None:
    pair.both(DDL)
    _plant(pair)
    # A trigger on the target rewrites every repaired row: the re-verification sees it.
    pair.run(
        pair.rds,
        """
        create function spoil() returns trigger language plpgsql as
        $$ begin new.name := 'spoiled'; return new; end $$;
        create trigger spoil before insert or update on items for each row execute function spoil();
        """,
    )
    report = compare_data(pair.neon, pair.rds)
    with pytest.raises(RepairError, match="items"):
        repair(pair.neon, pair.rds, report, Target.NEON, apply=True)
