"""Keys and key ranges: the SQL that selects a segment of a table on both servers.

A key value travels as a tuple of PostgreSQL text renderings (``value::text``,
key-column order), the same form the dual-write journal uses. Text is cast
back to the column type inside SQL, so any key type (int, uuid, text, date,
numeric, composite keys) round-trips exactly.

Segments are half-open key ranges ``[lo, hi)``; ``None`` means unbounded. A
range and the boundaries inside it split it into ``len(bounds) + 1`` segments:
``[lo, b0), [b0, b1), ..., [b_last, hi)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

# One quoting helper for the whole package (dual-write, phases and validation).
from dbroute.sql import ident as quote_ident

__all__ = ["BATCH", "KeyRange", "KeySpec", "KeyValue", "Sql", "batches", "quote_ident"]

#: A key value: each key column rendered as PostgreSQL text, in key-column order.
KeyValue = tuple[str, ...]

#: Keys per query when rows are read back by key.
BATCH = 500

T = TypeVar("T")


def batches(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Sql:
    """A SQL fragment under construction with its positional (``%s``) parameters."""

    text: str = ""
    params: list[object] | None = None

    def __post_init__(self) -> None:
        if self.params is None:
            self.params = []

    def add(self, text: str, *params: object) -> Sql:
        """Append ``text`` (its ``%s`` placeholders bound to ``params``)."""
        self.text += text
        assert self.params is not None
        self.params.extend(params)
        return self

    def extend(self, other: Sql) -> Sql:
        """Append another fragment with its parameters."""
        assert other.params is not None
        return self.add(other.text, *other.params)

    @property
    def args(self) -> tuple[object, ...]:
        """The parameters, ready for ``exec_driver_sql``."""
        return tuple(self.params or ())


@dataclass(frozen=True)
class KeySpec:
    """The key columns of a table: names, SQL types, and whether to compare them bytewise.

    ``collate_c[i]`` is true for text-like columns whose collation differs between
    the two servers: ranges then use ``COLLATE "C"`` so both servers put each row
    in the same segment (at the cost of index range scans on that column).
    """

    columns: tuple[str, ...]
    types: tuple[str, ...]
    collate_c: tuple[bool, ...]

    def column(self, i: int, alias: str = "t") -> str:
        """Key column ``i`` of row alias ``alias``, collated for range comparisons."""
        expr = f"{alias}.{quote_ident(self.columns[i])}"
        return f'{expr} collate "C"' if self.collate_c[i] else expr

    def value(self, i: int) -> str:
        """A placeholder for key column ``i``'s text value, cast to the column type."""
        return f"%s::text::{self.types[i]}" + (' collate "C"' if self.collate_c[i] else "")

    def row(self, alias: str = "t") -> str:
        """The key of ``alias`` as one comparable expression (a row for composite keys)."""
        cols = ", ".join(self.column(i, alias) for i in range(len(self.columns)))
        return cols if len(self.columns) == 1 else f"({cols})"

    def literal(self, key: KeyValue) -> Sql:
        """A key value as a comparable SQL expression."""
        values = ", ".join(self.value(i) for i in range(len(self.columns)))
        return Sql(values if len(self.columns) == 1 else f"({values})", list(key))

    def as_text(self, alias: str = "t") -> str:
        """The select list rendering each key column as text."""
        return ", ".join(f"{alias}.{quote_ident(c)}::text" for c in self.columns)

    def order_by(self, alias: str = "t") -> str:
        """An ``order by`` list sorting rows the way ranges compare them."""
        return ", ".join(self.column(i, alias) for i in range(len(self.columns)))

    def in_range(self, key_range: KeyRange, alias: str = "t") -> Sql:
        """A predicate true for the rows of ``alias`` inside ``key_range``."""
        sql = Sql("true")
        if key_range.lo is not None:
            sql.add(f" and {self.row(alias)} >= ").extend(self.literal(key_range.lo))
        if key_range.hi is not None:
            sql.add(f" and {self.row(alias)} < ").extend(self.literal(key_range.hi))
        return sql

    def bucket(self, bounds: Sequence[KeyValue], alias: str = "t") -> Sql:
        """An expression giving each row its segment number: how many ``bounds`` are <= its key.

        Single-column keys use ``width_bucket`` (a binary search in C); composite
        keys a balanced ``case`` tree of row comparisons (log2(n) per row).
        """
        if not bounds:
            return Sql("0")
        if len(self.columns) == 1:
            collate = ' collate "C"' if self.collate_c[0] else ""
            return Sql(
                f"width_bucket({self.column(0, alias)}, %s::text[]::{self.types[0]}[]{collate})",
                [[key[0] for key in bounds]],
            )
        return self._case_tree(bounds, 0, len(bounds), alias)

    def _case_tree(self, bounds: Sequence[KeyValue], lo: int, hi: int, alias: str) -> Sql:
        if lo == hi:
            return Sql(str(lo))
        mid = (lo + hi) // 2
        sql = Sql(f"case when {self.row(alias)} < ").extend(self.literal(bounds[mid]))
        sql.add(" then ").extend(self._case_tree(bounds, lo, mid, alias))
        sql.add(" else ").extend(self._case_tree(bounds, mid + 1, hi, alias))
        return sql.add(" end")

    def join_keys(self, keys: Sequence[KeyValue], alias: str = "t") -> Sql:
        """A clause after ``from table alias`` restricting it to ``keys`` (index lookups).

        Single-column keys use ``= any(array)``, composite keys a join with
        ``unnest`` of one array per key column.
        """
        columns: list[object] = [[key[i] for key in keys] for i in range(len(self.columns))]
        if len(self.columns) == 1:
            column = f"{alias}.{quote_ident(self.columns[0])}"
            return Sql(f" where {column} = any(%s::text[]::{self.types[0]}[])", columns)
        names = [f"k{i}" for i in range(len(self.columns))]
        arrays = ", ".join("%s::text[]" for _ in names)
        return Sql(
            f" join unnest({arrays}) as k({', '.join(names)}) on {self.match(alias, 'k')}", columns
        )

    def match(self, alias: str, keys: str) -> str:
        """``alias``'s key equals the text key columns ``keys.k0, keys.k1, ...``."""
        return " and ".join(
            f"{alias}.{quote_ident(c)} = {keys}.k{i}::{t}"
            for i, (c, t) in enumerate(zip(self.columns, self.types, strict=True))
        )


@dataclass(frozen=True)
class KeyRange:
    """A half-open key range ``[lo, hi)``; ``None`` is unbounded on that side."""

    lo: KeyValue | None = None
    hi: KeyValue | None = None

    def split(self, bounds: Sequence[KeyValue]) -> list[KeyRange]:
        """The ``len(bounds) + 1`` segments ``bounds`` cut this range into."""
        edges: list[KeyValue | None] = [self.lo, *bounds, self.hi]
        return [KeyRange(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]

    def parts(
        self, bounds: Sequence[KeyValue], count: int
    ) -> list[tuple[KeyRange, list[KeyValue]]]:
        """Cut the segments ``bounds`` make into ``count`` runs of consecutive segments.

        Each run is ``(its range, the bounds inside it)``; together the runs make
        exactly the ``len(bounds) + 1`` segments, in order.
        """
        count = max(1, min(count, len(bounds) + 1))
        cuts = [len(bounds) * i // count for i in range(1, count)]
        edges: list[KeyValue | None] = [self.lo, *(bounds[c] for c in cuts), self.hi]
        starts = [0, *(c + 1 for c in cuts)]
        ends = [*cuts, len(bounds)]
        return [
            (KeyRange(edges[i], edges[i + 1]), list(bounds[starts[i] : ends[i]]))
            for i in range(count)
        ]

    def describe(self) -> str:
        """A short human rendering for progress and errors."""
        lo = "-inf" if self.lo is None else ",".join(self.lo)
        hi = "+inf" if self.hi is None else ",".join(self.hi)
        return f"[{lo} .. {hi})"
