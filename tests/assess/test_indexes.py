"""Properties of the duplicate-index rule (PgHero's), on generated index sets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.assess.indexes import IndexDef, find_duplicates

columns = st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True).map(tuple)
index_defs = st.builds(
    IndexDef,
    table=st.sampled_from(["t1", "t2"]),
    name=st.just(""),
    columns=columns,
    method=st.sampled_from(["btree", "hash"]),
    unique=st.booleans(),
    predicate=st.sampled_from(["", "a > 0"]),
)


def named(defs: list[IndexDef]) -> list[IndexDef]:
    return [
        IndexDef(d.table, f"i{n:02d}", d.columns, d.method, d.unique, d.predicate)
        for n, d in enumerate(defs)
    ]


def covers(big: IndexDef, small: IndexDef) -> bool:
    """The rule in words: same table/method/predicate; btree prefix or equal columns;
    a unique index only by an equal unique one."""
    same = (big.table, big.method, big.predicate) == (small.table, small.method, small.predicate)
    n = len(small.columns)
    fits = (
        big.columns[:n] == small.columns if big.method == "btree" else big.columns == small.columns
    )
    return same and fits and (not small.unique or (big.unique and big.columns == small.columns))


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.lists(index_defs, max_size=8).map(named))
def test_every_reported_duplicate_is_covered_and_one_of_each_set_survives(indexes):
    found = find_duplicates(indexes)
    reported = [d.index.name for d in found]
    assert len(reported) == len(set(reported))
    for duplicate in found:
        assert covers(duplicate.covered_by, duplicate.index)
        assert duplicate.covered_by is not duplicate.index
    # Nothing redundant is missed: an index covered by another is reported, unless
    # every index covering it is identical to it and has a later name (it survives).
    by_name = {i.name: i for i in indexes}
    for index in indexes:
        coverers = [o for o in indexes if o is not index and covers(o, index)]
        keeps = all(covers(index, o) and index.name < o.name for o in coverers)
        assert (index.name in reported) == (bool(coverers) and not keeps), index
    # Dropping everything reported leaves every dropped index covered by a kept one.
    kept = [i for i in indexes if i.name not in reported]
    for name in reported:
        assert any(covers(k, by_name[name]) for k in kept)


def test_unique_index_is_kept_when_only_a_wider_one_exists():
    a = IndexDef("t", "a", ("x",), unique=True)
    b = IndexDef("t", "b", ("x", "y"), unique=True)
    assert find_duplicates([a, b]) == []
