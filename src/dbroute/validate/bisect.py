"""Checksum bisection of one table down to the differing rows.

1. Cut the whole key space into segments of about ``leaf_rows`` rows at key
   quantiles taken from a block sample (no sort of the table, no min/max
   arithmetic that sparse keys defeat), up to ``max_segments``.
2. One grouped query per server computes every segment's checksum in a single
   scan; both servers run at the same time.
3. A mismatching segment of at most ``leaf_rows`` rows has its keys and row
   hashes downloaded from both servers and compared; a larger one is cut into
   ``factor`` pieces at its own key quantiles and compared again.

When a grouped query hits the statement timeout it is split in two halves (by
segments) and retried inside the same snapshot: checksums are sums, so the
halves add up to the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from dbroute.errors import SegmentTimeoutError
from dbroute.validate.checksum import Checksum, TableQuery
from dbroute.validate.keys import KeyRange, KeyValue
from dbroute.validate.snapshot import QueryTimeout, Side

__all__ = ["BisectOptions", "Bisector", "RawDiff"]

T = TypeVar("T")


@dataclass(frozen=True)
class BisectOptions:
    """Tuning of the bisection (the defaults suit tables from 1 to 10^8 rows)."""

    #: Segments of at most this many rows are downloaded (keys and hashes) and compared.
    leaf_rows: int = 2000
    #: Pieces a mismatching segment larger than ``leaf_rows`` is cut into.
    factor: int = 32
    #: Segments of the first pass (one grouped scan per server).
    max_segments: int = 4096
    #: Sampled keys per first-pass segment (more: more even segments).
    sample_per_segment: int = 20


@dataclass
class RawDiff:
    """Keys found different by hash, before classification."""

    only_in_neon: list[KeyValue] = field(default_factory=list)
    only_in_rds: list[KeyValue] = field(default_factory=list)
    changed: list[KeyValue] = field(default_factory=list)
    rows_neon: int = 0
    rows_rds: int = 0
    queries: int = 0
    rows_downloaded: int = 0


class Bisector:
    """Finds the differing rows of one table between two snapshots."""

    def __init__(
        self,
        query: TableQuery,
        neon: Side,
        rds: Side,
        options: BisectOptions,
        helper: ThreadPoolExecutor,
    ) -> None:
        self.query = query
        self.neon = neon
        self.rds = rds
        self.options = options
        self._helper = helper  # runs the RDS half of each step while Neon runs here
        self.result = RawDiff()

    def run(self, estimate_neon: int, estimate_rds: int) -> RawDiff:
        """Compare the whole table; ``estimate_*`` are row-count estimates (pg_class)."""
        estimate = max(estimate_neon, estimate_rds)
        bounds: list[KeyValue] = []
        # Small tables get one checksum each side (exact counts, nothing downloaded when
        # equal): a stale estimate can never make the whole table a "leaf".
        if estimate > self.options.leaf_rows:
            pieces = min(
                self.options.max_segments, max(2, math.ceil(estimate / self.options.leaf_rows))
            )
            sample_side = self.neon if estimate_neon >= estimate_rds else self.rds
            percent = min(100.0, 100.0 * pieces * self.options.sample_per_segment / estimate)
            bounds = self.query.sample_boundaries(sample_side, percent, pieces)
            self.result.queries += 1
        totals = self._compare(KeyRange(), bounds)
        self.result.rows_neon, self.result.rows_rds = totals
        return self.result

    def _both(self, neon: Callable[[Side], T], rds: Callable[[Side], T]) -> tuple[T, T]:
        future = self._helper.submit(rds, self.rds)
        try:
            first = neon(self.neon)
        finally:
            second = future.result()  # never leave the RDS query running unobserved
        return first, second

    def _compare(self, key_range: KeyRange, bounds: Sequence[KeyValue]) -> tuple[int, int]:
        """Compare the segments ``bounds`` cut ``key_range`` into; return the row counts."""
        neon, rds = self._both(
            lambda side: self._checksums(side, key_range, bounds),
            lambda side: self._checksums(side, key_range, bounds),
        )
        for segment, ours, theirs in zip(key_range.split(bounds), neon, rds, strict=True):
            if ours != theirs:
                self._descend(segment, ours, theirs)
        return sum(c[0] for c in neon), sum(c[0] for c in rds)

    def _descend(self, segment: KeyRange, neon: Checksum, rds: Checksum) -> None:
        rows = max(neon[0], rds[0])
        if rows <= self.options.leaf_rows:
            self._leaf(segment)
            return
        side = self.neon if neon[0] >= rds[0] else self.rds
        pieces = min(self.options.factor, math.ceil(rows / self.options.leaf_rows))
        bounds = self._guarded(side, segment, lambda: self.query.boundaries(side, segment, rows, pieces))
        self.result.queries += 1
        if bounds:
            self._compare(segment, bounds)
        else:  # cannot be cut further (every key is on the other side)
            self._leaf(segment)

    def _checksums(
        self, side: Side, key_range: KeyRange, bounds: Sequence[KeyValue]
    ) -> list[Checksum]:
        self.result.queries += 1
        try:
            return self.query.checksums(side, key_range, bounds)
        except QueryTimeout:
            if not bounds:
                raise self._timeout(side, key_range) from None
        # Adapt: half the segments per query, same snapshot, same answer.
        middle = len(bounds) // 2
        left = self._checksums(side, KeyRange(key_range.lo, bounds[middle]), bounds[:middle])
        right = self._checksums(side, KeyRange(bounds[middle], key_range.hi), bounds[middle + 1 :])
        return left + right

    def _leaf(self, segment: KeyRange) -> tuple[int, int]:
        neon, rds = self._both(
            lambda side: self._guarded(side, segment, lambda: self.query.row_hashes(side, segment)),
            lambda side: self._guarded(side, segment, lambda: self.query.row_hashes(side, segment)),
        )
        self.result.queries += 2
        self.result.rows_downloaded += len(neon) + len(rds)
        for key, value in neon.items():
            other = rds.get(key)
            if other is None:
                self.result.only_in_neon.append(key)
            elif other != value:
                self.result.changed.append(key)
        self.result.only_in_rds.extend(key for key in rds if key not in neon)
        return len(neon), len(rds)

    def _guarded(self, side: Side, segment: KeyRange, work: Callable[[], T]) -> T:
        try:
            return work()
        except QueryTimeout:
            raise self._timeout(side, segment) from None

    def _timeout(self, side: Side, segment: KeyRange) -> SegmentTimeoutError:
        return SegmentTimeoutError(
            f"{self.query.qualified} on {side.target.value}: a single segment "
            f"{segment.describe()} hit the statement timeout; raise the timeout "
            "(--statement-timeout) or lower --leaf-rows"
        )
