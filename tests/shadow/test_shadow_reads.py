"""Shadow reads end to end on two real PostgreSQL servers: matching, planted differences, lag."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbroute import Router, Target
from dbroute.shadow import Difference, ShadowMismatch, ShadowOutcome, Verdict

from .shadow_helpers import on


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


def outcomes(router: Router) -> list[ShadowOutcome]:
    seen: list[ShadowOutcome] = []
    router.shadow.publish(seen.append)
    return seen


def read(router: Router, sql: str, key: str = "user-1", **params: Any) -> list[Any]:
    with router.session(key) as session:
        return list(session.execute(text(sql), params).all())


def test_matching_data_gives_no_mismatch_across_many_queries(shadow_router):
    router = shadow_router()
    seen = outcomes(router)
    for n in range(40):
        read(router, "select id, name, price from items where id <= :n", key=f"u{n}", n=n % 20)
        with router.session(f"u{n}") as session:
            assert session.scalars(select(Item).where(Item.id == n % 20 + 1)).one().id == n % 20 + 1
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.compared == 80
    assert report.mismatched == 0
    assert report.errors == 0
    assert {o.verdict for o in seen} == {Verdict.MATCH}


def test_caller_result_is_unchanged(shadow_router):
    router = shadow_router()
    rows = read(router, "select id, name, price from items order by id")
    with router.session("k") as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
    assert router.shadow_flush(30)
    assert [r.id for r in rows] == list(range(1, 21))
    assert [i.name for i in items] == [f"item-{n}" for n in range(1, 21)]
    assert router.shadow_report().compared == 2


@pytest.mark.parametrize(
    ("plant", "sql", "difference"),
    [
        (
            "update items set name = 'changed' where id = 7",
            "select * from items",
            Difference.VALUES,
        ),
        (
            "insert into items (id, name, price) values (99, 'extra', 1)",
            "select id, name from items",
            Difference.ROW_COUNT,
        ),
        (
            "alter table items alter column price type float8",
            "select id, price from items",
            Difference.TYPES,
        ),
        (
            "alter table items rename column name to title",
            "select * from items",
            Difference.COLUMNS,
        ),
    ],
)
def test_planted_difference_is_a_mismatch(shadow_router, plant, sql, difference):
    router = shadow_router()
    mismatches: list[ShadowMismatch] = []
    router.shadow.on_mismatch(mismatches.append)
    on(router, Target.RDS, plant)  # keys route to Neon: RDS is the shadow
    read(router, sql)
    assert router.shadow_flush(30)
    assert [m.difference for m in mismatches] == [difference]
    mismatch = mismatches[0]
    assert (mismatch.primary, mismatch.shadow) == (Target.NEON, Target.RDS)
    assert mismatch.primary_row is None
    assert mismatch.shadow_row is None
    assert router.shadow_report().mismatched == 1


def test_changed_row_reports_first_difference_and_values_when_opted_in(shadow_router):
    router = shadow_router(shadow_include_values=True)
    mismatches: list[ShadowMismatch] = []
    router.shadow.on_mismatch(mismatches.append)
    on(router, Target.RDS, "update items set name = 'changed' where id = 7")
    read(router, "select id, name from items order by id")
    assert router.shadow_flush(30)
    (mismatch,) = mismatches
    assert mismatch.first_difference == 6
    assert mismatch.primary_row == (7, "item-7")
    assert mismatch.shadow_row == (7, "changed")
    assert (mismatch.primary_rows, mismatch.shadow_rows) == (20, 20)


def test_row_order_matters_only_with_order_by(shadow_router):
    router = shadow_router()
    seen = outcomes(router)
    # Rewrite RDS's heap in reverse: same rows, another physical (and scan) order.
    on(router, Target.RDS, "create table items_copy as select * from items order by id desc")
    on(router, Target.RDS, "truncate items")
    on(router, Target.RDS, "insert into items select * from items_copy order by id desc")
    read(router, "select id, name from items")  # no ORDER BY: any order is right
    read(router, "select id, name from items order by id")  # ordered, equal
    read(router, "select id, name from items order by id desc")
    assert router.shadow_flush(30)
    assert [o.verdict for o in seen] == [Verdict.MATCH] * 3
    # Now the ORDER BY key differs on RDS: the same ids come back in reverse.
    on(router, Target.RDS, "update items set score = -id")
    seen.clear()
    read(router, "select id from items order by score nulls first, id")
    read(router, "select id from items")
    assert router.shadow_flush(30)
    assert [(o.verdict, o.difference) for o in seen] == [
        (Verdict.MISMATCH, Difference.ORDER),
        (Verdict.MATCH, None),
    ]


def test_lag_explained_by_dual_write_journal(shadow_router):
    router = shadow_router()
    seen = outcomes(router)
    on(router, Target.RDS, "update items set name = 'not yet mirrored' where id = 3")
    # The journal says key 3 of public.items is still waiting to be copied.
    on(router, Target.NEON, "create schema if not exists dbroute")
    on(
        router,
        Target.NEON,
        "create table dbroute.journal (kind text, table_schema text, "
        "table_name text, pk text[], primary key (kind, table_schema, table_name, pk))",
    )
    on(
        router,
        Target.NEON,
        "insert into dbroute.journal values ('change', 'public', 'items', '{3}')",
    )
    read(router, "select id, name from items")
    read(router, "select name from items")  # no key in the result: cannot be matched to the journal
    assert router.shadow_flush(30)
    assert [o.verdict for o in seen] == [Verdict.LAGGED, Verdict.MISMATCH]
    report = router.shadow_report()
    assert (report.lagged, report.mismatched) == (1, 1)


def test_lag_explained_by_recheck(shadow_router):
    router = shadow_router(shadow_recheck_delay=0.3)
    seen = outcomes(router)
    on(router, Target.RDS, "update items set name = 'late' where id = 3")

    @router.shadow.ignore
    def catch_up(primary, shadow):
        # Runs after the shadow differed and before the recheck: replication catches up.
        on(router, Target.RDS, "update items set name = 'item-3' where id = 3")
        return False

    read(router, "select name from items")
    assert router.shadow_flush(30)
    assert [o.verdict for o in seen] == [Verdict.LAGGED]


def test_recheck_that_still_differs_is_a_mismatch(shadow_router):
    router = shadow_router(shadow_recheck_delay=0.05)
    seen = outcomes(router)
    on(router, Target.RDS, "update items set name = 'wrong' where id = 3")
    read(router, "select name from items")
    assert router.shadow_flush(30)
    assert [o.verdict for o in seen] == [Verdict.MISMATCH]


def test_with_dual_write_reads_of_mirrored_writes_match(make_router):
    router = make_router(dual_write=True, shadow_read_percent=100, shadow_recheck_delay=0)
    for target in Target:
        on(router, target, "create table kv (k int primary key, v int not null)")
    router.setup()
    for n in range(20):
        with router.session(f"user-{n}") as session, session.begin():
            session.execute(text("insert into kv values (:k, :v)"), {"k": n, "v": n * n})
            session.execute(text("select v from kv where k = :k"), {"k": n})  # own write: skipped
        read(router, "select k, v from kv where k <= :k", key=f"user-{n}", k=n)
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.compared == 20
    assert report.mismatched == 0
    assert report.skipped["pending_writes"] == 20
