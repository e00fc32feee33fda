"""Pure properties of key ranges (no database)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.validate.keys import KeyRange

bounds = st.lists(st.integers(0, 10_000), unique=True).map(
    lambda xs: [(str(x),) for x in sorted(xs)]
)


@settings(derandomize=True, max_examples=200)
@given(bounds=bounds, count=st.integers(1, 8))
def test_parts_make_exactly_the_same_segments(bounds: list[tuple[str]], count: int) -> None:
    whole = KeyRange().split(bounds)
    parts = KeyRange().parts(bounds, count)
    assert [s for part, inner in parts for s in part.split(inner)] == whole
    assert len(parts) == min(count, len(bounds) + 1)
