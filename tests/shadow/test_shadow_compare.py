"""The comparator: PostgreSQL value semantics and hypothesis properties (pure, no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.shadow import Column, Difference, ResultSet, compare_results
from dbroute.shadow.compare import values_equal

INT, TEXT, NUMERIC, FLOAT8 = 23, 25, 1700, 701
COLUMNS = (Column("a", INT), Column("b", TEXT), Column("c", FLOAT8))


def result(rows, columns=COLUMNS):
    return ResultSet(columns, list(rows))


def test_postgresql_value_semantics():
    assert values_equal(Decimal("1.0"), Decimal("1.00"))
    assert values_equal(Decimal("NaN"), Decimal("NaN"))
    assert values_equal(float("nan"), float("nan"))
    assert not values_equal(float("nan"), 1.0)
    instant = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert values_equal(instant, instant.astimezone(timezone(timedelta(hours=2))))
    assert not values_equal(instant, instant + timedelta(microseconds=1))
    assert values_equal({"x": 1, "y": [1, 2]}, {"y": [1, 2], "x": 1})
    assert not values_equal([1, 2], [2, 1])
    assert not values_equal(0.1 + 0.2, 0.3)
    assert values_equal(0.1 + 0.2, 0.3, tolerance=1e-9)
    assert values_equal([0.1 + 0.2], [0.3], tolerance=1e-9)


def test_columns_and_types_are_compared():
    rows = [(1, "x", 1.0)]
    renamed = (Column("a", INT), Column("B", TEXT), Column("c", FLOAT8))
    retyped = (Column("a", INT), Column("b", TEXT), Column("c", NUMERIC))
    user_type = (Column("a", INT), Column("b", 90001), Column("c", FLOAT8))
    other_oid = (Column("a", INT), Column("b", 90002), Column("c", FLOAT8))
    compare = compare_results
    assert (
        compare(result(rows), result(rows, renamed), ordered=False).difference is Difference.COLUMNS
    )
    assert (
        compare(result(rows), result(rows, retyped), ordered=False).difference is Difference.TYPES
    )
    # User types (enums...) have other OIDs on each database: their values decide.
    assert compare(result(rows, user_type), result(rows, other_oid), ordered=False).equal


def test_first_difference_and_kinds():
    a = [(n, "x", 0.0) for n in range(5)]
    b = [*a[:3], (99, "x", 0.0), a[4]]
    compared = compare_results(result(a), result(b), ordered=True)
    assert (compared.difference, compared.first_difference) == (Difference.VALUES, 3)
    compared = compare_results(result(a), result(a[:4]), ordered=False)
    assert (compared.difference, compared.first_difference) == (Difference.ROW_COUNT, 4)
    reordered = compare_results(result(a), result(a[::-1]), ordered=True)
    assert (reordered.difference, reordered.first_difference) == (Difference.ORDER, 0)
    assert compare_results(result(a), result(a[::-1]), ordered=False).equal


# --- properties ----------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["x", "y", ""]),
    st.floats(allow_infinity=False).filter(lambda f: f == 0 or abs(f) > 1e-300),
    st.sampled_from([float("nan"), Decimal("NaN"), Decimal("1.0"), Decimal("1.00"), -0.0]),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from("pq"), st.integers(0, 2), max_size=2),
)
rows = st.lists(st.tuples(values, values), max_size=6)
COLS2 = (Column("a", 0), Column("b", 0))
deterministic = settings(max_examples=300, derandomize=True, deadline=None)


def brute_force(a, b, ordered):
    """Reference: pairwise search, quadratic, obviously right."""
    same = lambda x, y: len(x) == len(y) and all(map(values_equal, x, y))  # noqa: E731
    if ordered:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    left = list(b)
    for row in a:
        match = next((i for i, other in enumerate(left) if same(row, other)), None)
        if match is None:
            return False
        left.pop(match)
    return not left


@deterministic
@given(rows, rows, st.booleans())
def test_agrees_with_brute_force(a, b, ordered):
    compared = compare_results(ResultSet(COLS2, a), ResultSet(COLS2, b), ordered=ordered)
    assert compared.equal == brute_force(a, b, ordered)


@deterministic
@given(rows, rows, st.booleans(), st.sampled_from([0.0, 1e-6]))
def test_symmetric(a, b, ordered, tolerance):
    forward = compare_results(
        ResultSet(COLS2, a), ResultSet(COLS2, b), ordered=ordered, float_tolerance=tolerance
    )
    backward = compare_results(
        ResultSet(COLS2, b), ResultSet(COLS2, a), ordered=ordered, float_tolerance=tolerance
    )
    assert forward.equal == backward.equal


@deterministic
@given(rows, st.randoms(use_true_random=False))
def test_ignores_order_exactly_when_unordered(a, rnd):
    shuffled = list(a)
    rnd.shuffle(shuffled)
    same_order = brute_force(a, shuffled, ordered=True)
    assert compare_results(ResultSet(COLS2, a), ResultSet(COLS2, shuffled), ordered=False).equal
    ordered = compare_results(ResultSet(COLS2, a), ResultSet(COLS2, shuffled), ordered=True)
    assert ordered.equal == same_order
    if not same_order:
        assert ordered.difference is Difference.ORDER


@deterministic
@given(rows.filter(bool), st.data())
def test_a_changed_value_is_always_found(a, data):
    index = data.draw(st.integers(0, len(a) - 1))
    changed = list(a)
    changed[index] = ("changed", changed[index][1])
    for ordered in (True, False):
        compared = compare_results(ResultSet(COLS2, a), ResultSet(COLS2, changed), ordered=ordered)
        assert not compared.equal
        assert compared.first_difference is not None
        assert math.isfinite(compared.first_difference)
