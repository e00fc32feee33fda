"""The pure rule behind ``sequences:<db>``: a sequence's next values and their overlap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.phases.sequences import Window, next_window

deterministic = settings(derandomize=True, max_examples=400, deadline=None)


def generated(next_value: int, increment: int, size: int, low: int, high: int) -> list[int]:
    """What ``size`` calls of nextval() return (stopping where the sequence is exhausted)."""
    values, value = [], next_value
    while len(values) < size and low <= value <= high:
        values.append(value)
        value += increment
    return values


@st.composite
def sequences(draw):
    low = draw(st.integers(-300, 0))
    high = draw(st.integers(1, 300))
    increment = draw(st.integers(1, 7) | st.integers(-7, -1))
    next_value = draw(st.integers(low - 10, high + 10))
    size = draw(st.integers(1, 60))
    return next_value, increment, size, low, high


@deterministic
@given(sequences())
def test_the_window_spans_exactly_the_next_values(seq):
    values = generated(*seq)
    window = next_window(*seq)
    if not values:
        assert window is None
        return
    assert window == Window(min(values), max(values))
    assert all(v in window for v in values)


@deterministic
@given(sequences(), sequences())
def test_windows_overlap_when_the_ranges_share_a_value(a, b):
    wa, wb = next_window(*a), next_window(*b)
    if wa is None or wb is None:
        return
    shared = set(range(wa.low, wa.high + 1)) & set(range(wb.low, wb.high + 1))
    assert wa.overlaps(wb) == bool(shared) == wb.overlaps(wa)
    # Overlap of the ranges is conservative: sharing a generated value implies it.
    if set(generated(*a)) & set(generated(*b)):
        assert wa.overlaps(wb)
