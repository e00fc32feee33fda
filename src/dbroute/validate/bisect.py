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
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from dbroute.errors import SegmentTimeoutError
from dbroute.validate.checksum import Checksum, TableQuery
from dbroute.validate.keys import KeyRange, KeyValue, batches
from dbroute.validate.snapshot import QueryTimeout, Side

__all__ = ["BisectOptions", "Bisector", "RawDiff"]

T = TypeVar("T")

#: Rows downloaded per leaf query at most (several small segments in one query).
LEAF_BATCH_ROWS = 20_000

#: Tables estimated at least this large are sampled by blocks, smaller ones by rows.
BLOCK_SAMPLE_ROWS = 200_000


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
        pool: ThreadPoolExecutor,
    ) -> None:
        self.query = query
        self.neon = neon
        self.rds = rds
        self.options = options
        self._helper = helper  # runs the RDS half of each step while Neon runs here
        self._pool = pool  # runs the parts of a first pass (never ``helper``: no deadlock)
        self.result = RawDiff()
        self._lock = threading.Lock()  # queries run on several threads

    def run(self, estimate_neon: int, estimate_rds: int) -> RawDiff:
        """Compare the whole table; ``estimate_*`` are row-count estimates (pg_class)."""
        estimate = max(estimate_neon, estimate_rds)
        bounds: list[KeyValue] = []
        # Small tables get one checksum each side (exact counts, nothing downloaded when
        # equal): a stale estimate can never make the whole table a "leaf".
        if estimate > self.options.leaf_rows:
            # Segments of about half a leaf: most mismatching ones are leaves at once.
            pieces = min(
                self.options.max_segments, max(2, math.ceil(2 * estimate / self.options.leaf_rows))
            )
            sample_side = self.neon if estimate_neon >= estimate_rds else self.rds
            percent = min(100.0, 100.0 * pieces * self.options.sample_per_segment / estimate)
            method = "system" if estimate >= BLOCK_SAMPLE_ROWS else "bernoulli"
            bounds = self._sample(sample_side, percent, pieces, method)
        totals = self._compare(bounds)
        self.result.rows_neon, self.result.rows_rds = totals
        return self.result

    def _count(self, queries: int) -> None:
        with self._lock:
            self.result.queries += queries

    def _sample(self, side: Side, percent: float, pieces: int, method: str) -> list[KeyValue]:
        """Quantile keys from a block sample; a smaller sample after each timeout."""
        for _ in range(6):
            self._count(1)
            try:
                return self.query.sample_boundaries(side, percent, pieces, method)
            except QueryTimeout:
                percent /= 4
        return []  # one segment: the checksum query then splits or reports the timeout

    def _both(self, work: Callable[[Side], T]) -> tuple[T, T]:
        """``work`` on Neon (this thread) and on RDS (the helper thread) at once."""
        future = self._helper.submit(work, self.rds)
        try:
            first = work(self.neon)
        finally:
            second = future.result()  # never leave the RDS query running unobserved
        return first, second

    def _compare(self, bounds: Sequence[KeyValue]) -> tuple[int, int]:
        """Compare the whole table cut at ``bounds``; return the row counts."""
        neon, rds = self._both(lambda side: self._first_pass(side, bounds))
        self._resolve(KeyRange().split(bounds), neon, rds)
        return sum(c[0] for c in neon), sum(c[0] for c in rds)

    def _resolve(
        self, segments: Sequence[KeyRange], neon: Sequence[Checksum], rds: Sequence[Checksum]
    ) -> None:
        """Download the small mismatching segments; cut the large ones and compare again.

        A whole level goes at once: one download and one checksum query per
        server, whatever the number of mismatching segments.
        """
        small: list[KeyRange] = []
        large: list[tuple[KeyRange, list[KeyValue]]] = []
        for segment, ours, theirs in zip(segments, neon, rds, strict=True):
            if ours == theirs:
                continue
            rows = max(ours[0], theirs[0])
            cuts = [] if rows <= self.options.leaf_rows else self._cut(segment, ours, theirs)
            if cuts:
                large.append((segment, cuts))
            else:
                small.append(segment)
        self._download(small)
        if not large:
            return
        # One set of bounds for all large segments: their edges and their cuts. Buckets
        # between them hold no row (only rows inside the segments are read).
        bounds: list[KeyValue] = []
        for segment, cuts in large:
            for edge in (segment.lo, *cuts, segment.hi):
                if edge is not None and (not bounds or bounds[-1] != edge):
                    bounds.append(edge)
        within = [segment for segment, _ in large]
        neon_sums, rds_sums = self._both(
            lambda side: self._checksums(side, KeyRange(), bounds, within)
        )
        self._resolve(KeyRange().split(bounds), neon_sums, rds_sums)

    def _cut(self, segment: KeyRange, neon: Checksum, rds: Checksum) -> list[KeyValue]:
        """Keys cutting a large segment into ``factor`` pieces (its own quantiles)."""
        rows = max(neon[0], rds[0])
        side = self.neon if neon[0] >= rds[0] else self.rds
        pieces = min(self.options.factor, math.ceil(rows / self.options.leaf_rows))
        self._count(1)
        return self._guarded(
            side, segment, lambda: self.query.boundaries(side, segment, rows, pieces)
        )

    def _checksums(
        self,
        side: Side,
        key_range: KeyRange,
        bounds: Sequence[KeyValue],
        within: Sequence[KeyRange] = (),
    ) -> list[Checksum]:
        self._count(1)
        try:
            return self.query.checksums(side, key_range, bounds, within)
        except QueryTimeout:
            if not bounds:
                raise self._timeout(side, key_range) from None
        # Adapt: half the segments per query, same snapshot, same answer.
        found: list[Checksum] = []
        for part, inner in key_range.parts(bounds, 2):
            found.extend(self._checksums(side, part, inner, within))
        return found

    def _first_pass(self, side: Side, bounds: Sequence[KeyValue]) -> list[Checksum]:
        """The whole table's segment checksums, split over ``side``'s helper connections."""
        connections = [side, *side.helpers]
        parts = KeyRange().parts(bounds, len(connections))
        if len(parts) == 1:
            return self._checksums(side, KeyRange(), bounds)
        futures = [
            self._pool.submit(self._checksums, conn, part, inner)
            for conn, (part, inner) in zip(connections, parts, strict=False)
        ]
        wait(futures)  # all of them, even when one failed: each holds a connection
        return [checksum for future in futures for checksum in future.result()]

    def _download(self, segments: Sequence[KeyRange]) -> None:
        """Download and compare ``segments`` in batches of about ``LEAF_BATCH_ROWS`` rows."""
        for batch in batches(segments, max(1, LEAF_BATCH_ROWS // self.options.leaf_rows)):
            self._leaves(batch)

    def _leaves(self, segments: Sequence[KeyRange]) -> None:
        span = KeyRange(segments[0].lo, segments[-1].hi)
        neon, rds = self._both(
            lambda side: self._guarded(side, span, lambda: self.query.row_hashes(side, segments))
        )
        self._count(2)
        self.result.rows_downloaded += len(neon) + len(rds)
        for key, value in neon.items():
            other = rds.get(key)
            if other is None:
                self.result.only_in_neon.append(key)
            elif other != value:
                self.result.changed.append(key)
        self.result.only_in_rds.extend(key for key in rds if key not in neon)

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
