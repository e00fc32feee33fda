"""Compare two query results the way PostgreSQL compares values.

* Columns: names must match in order; built-in type OIDs must match (user
  types get different OIDs per database, so only their values are compared).
* Rows: in order when the statement has a top-level ``ORDER BY``, as a
  multiset otherwise.
* Values: ``Decimal('1.0') == Decimal('1.00')``; ``NaN`` equals ``NaN``
  (PostgreSQL sorts NaN as one value, for ``float8`` and ``numeric``);
  timestamps with time zone compare by instant; JSON objects ignore key order;
  arrays and JSON compare element by element. Floats may differ by
  ``float_tolerance`` (relative, and absolute below 1).

The comparison is symmetric: ``compare_results(a, b)`` and
``compare_results(b, a)`` agree on equality.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from dbroute.shadow.results import FIRST_USER_OID, ResultSet

__all__ = [
    "Comparison",
    "Difference",
    "compare_results",
    "row_key",
    "values_equal",
]


class Difference(StrEnum):
    """How two results differ."""

    COLUMNS = "columns"  # column names differ
    TYPES = "types"  # a built-in column type differs
    ROW_COUNT = "row_count"  # one side has more rows
    VALUES = "values"  # same number of rows, different contents
    ORDER = "order"  # same rows in another order, and the statement has ORDER BY


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of :func:`compare_results`."""

    difference: Difference | None
    #: Index (in the primary's rows) of the first row without an equal row on
    #: the other side; the shorter length when one side only has extra rows.
    first_difference: int | None = None
    #: Indexes of unmatched rows on each side (for lag lookups), capped.
    primary_unmatched: tuple[int, ...] = ()
    shadow_unmatched: tuple[int, ...] = ()

    @property
    def equal(self) -> bool:
        """Whether the results are the same."""
        return self.difference is None


EQUAL = Comparison(None)
_UNMATCHED_CAP = 100


class _NaN:
    """The one NaN: equal to itself, like PostgreSQL's NaN."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NaN"


NAN = _NaN()


def canonical(value: Any) -> Any:
    """A hashable value equal (``==``) exactly when the values are equal for PostgreSQL."""
    if value is None or isinstance(value, (str, int, bytes)):
        return value
    if isinstance(value, float):
        return NAN if math.isnan(value) else value
    if isinstance(value, Decimal):
        return NAN if value.is_nan() else value
    if isinstance(value, dict):
        return ("{}", tuple(sorted(((str(k), canonical(v)) for k, v in value.items()))))
    if isinstance(value, (list, tuple)):
        return ("[]", tuple(canonical(v) for v in value))
    if isinstance(value, memoryview):
        return bytes(value)
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value


def row_key(row: Sequence[Any]) -> tuple[Any, ...]:
    """:func:`canonical` of every value of ``row``."""
    return tuple(canonical(v) for v in row)


def values_equal(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Whether two values are equal for PostgreSQL, floats within ``tolerance``."""
    if tolerance:
        if isinstance(a, float) and isinstance(b, float):
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(
                values_equal(x, y, tolerance) for x, y in zip(a, b, strict=True)
            )
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(values_equal(a[k], b[k], tolerance) for k in a)
    return bool(canonical(a) == canonical(b))


def _rows_equal(a: Sequence[Any], b: Sequence[Any], tolerance: float) -> bool:
    return len(a) == len(b) and all(
        values_equal(x, y, tolerance) for x, y in zip(a, b, strict=True)
    )


def _sort_key(value: Any) -> tuple[Any, ...]:
    # Values of one column share a rank, so keys of one column always compare.
    value = canonical(value)
    if value is None:
        return (0,)
    if value is NAN:
        return (2,)
    if isinstance(value, (bool, int, float, Decimal)):
        return (1, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, bytes):
        return (4, value)
    if isinstance(value, datetime):
        return (5, value) if value.tzinfo is not None else (6, value)
    if isinstance(value, (date, time, timedelta)):
        return (7, type(value).__name__, value) if not isinstance(value, time) else (8, str(value))
    return (9, type(value).__name__, repr(value))


def _row_sort_key(row: Sequence[Any]) -> tuple[tuple[Any, ...], ...]:
    return tuple(_sort_key(v) for v in row)


def compare_results(
    primary: ResultSet, shadow: ResultSet, *, ordered: bool, float_tolerance: float = 0.0
) -> Comparison:
    """Compare ``shadow`` with ``primary``: columns, then rows (in order when ``ordered``)."""
    if [c.name for c in primary.columns] != [c.name for c in shadow.columns]:
        return Comparison(Difference.COLUMNS)
    for left, right in zip(primary.columns, shadow.columns, strict=True):
        builtin = left.type_oid < FIRST_USER_OID and right.type_oid < FIRST_USER_OID
        if builtin and left.type_oid != right.type_oid:
            return Comparison(Difference.TYPES)
    if ordered:
        return _compare_ordered(primary.rows, shadow.rows, float_tolerance)
    if float_tolerance:
        return _compare_sorted(primary.rows, shadow.rows, float_tolerance)
    return _compare_multiset(primary.rows, shadow.rows)


def _kind(a: Sequence[Any], b: Sequence[Any]) -> Difference:
    return Difference.ROW_COUNT if len(a) != len(b) else Difference.VALUES


def _compare_ordered(
    a: Sequence[tuple[Any, ...]], b: Sequence[tuple[Any, ...]], tolerance: float
) -> Comparison:
    first = next(
        (i for i, (x, y) in enumerate(zip(a, b)) if not _rows_equal(x, y, tolerance)),  # noqa: B905
        None,
    )
    if first is None and len(a) == len(b):
        return EQUAL
    unordered = _compare_sorted(a, b, tolerance) if tolerance else _compare_multiset(a, b)
    if unordered.equal:  # the same rows, in another order
        return Comparison(Difference.ORDER, first)
    first = min(len(a), len(b)) if first is None else first
    return Comparison(
        _kind(a, b),
        first,
        unordered.primary_unmatched,
        unordered.shadow_unmatched,
    )


def _unmatched(keys: list[tuple[Any, ...]], others: list[tuple[Any, ...]]) -> list[int]:
    """Indexes of ``keys`` left over after pairing each with an equal key of ``others``."""
    available = Counter(others)
    unmatched: list[int] = []
    for i, key in enumerate(keys):
        if available[key] > 0:
            available[key] -= 1
        else:
            unmatched.append(i)
    return unmatched


def _compare_multiset(a: Sequence[tuple[Any, ...]], b: Sequence[tuple[Any, ...]]) -> Comparison:
    keys_a = [row_key(r) for r in a]
    keys_b = [row_key(r) for r in b]
    unmatched_a = _unmatched(keys_a, keys_b)
    if not unmatched_a and len(a) == len(b):
        return EQUAL
    unmatched_b = _unmatched(keys_b, keys_a)
    first = unmatched_a[0] if unmatched_a else len(a)
    return Comparison(
        _kind(a, b), first, tuple(unmatched_a[:_UNMATCHED_CAP]), tuple(unmatched_b[:_UNMATCHED_CAP])
    )


def _compare_sorted(
    a: Sequence[tuple[Any, ...]], b: Sequence[tuple[Any, ...]], tolerance: float
) -> Comparison:
    # With a tolerance rows cannot be hashed: sort both sides, then pair them.
    order_a = sorted(range(len(a)), key=lambda i: _row_sort_key(a[i]))
    order_b = sorted(range(len(b)), key=lambda j: _row_sort_key(b[j]))
    unmatched_a: list[int] = []
    unmatched_b: list[int] = []
    for i, j in zip(order_a, order_b):  # noqa: B905
        if not _rows_equal(a[i], b[j], tolerance):
            unmatched_a.append(i)
            unmatched_b.append(j)
    unmatched_a += order_a[len(order_b) :]
    unmatched_b += order_b[len(order_a) :]
    if not unmatched_a and not unmatched_b:
        return EQUAL
    first = min(unmatched_a) if unmatched_a else len(a)
    return Comparison(
        _kind(a, b),
        first,
        tuple(sorted(unmatched_a)[:_UNMATCHED_CAP]),
        tuple(sorted(unmatched_b)[:_UNMATCHED_CAP]),
    )
