"""Segment checksums computed by the servers, so rows do not travel.

A row's hash is a 64-bit hash of its canonical text form, ``row(c1, c2, ...)::text``
over the compared columns: NULL renders as nothing and the empty string as
``""``, and json, arrays, numeric, timestamptz and bytea render exactly (the
snapshot pins the settings that would change them). A segment's checksum is
``(count(*), sum(hash))``; sums are additive, so a segment split into pieces
(after a statement timeout) has the same checksum as the whole.

``hashtext`` (the default) is ``hashtextextended``, PostgreSQL's own 64-bit
text hash: as fast as a scan. It is the same on every little-endian server
(x86-64 and ARM, so Neon and RDS). ``md5`` is portable everywhere and about
three times slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dbroute.validate.keys import KeyRange, KeySpec, KeyValue, Sql, quote_ident
from dbroute.validate.snapshot import Side

__all__ = ["Algorithm", "Checksum", "Segment", "TableQuery"]

Algorithm = Literal["hashtext", "md5"]

#: A segment's checksum: row count and the sum of the rows' hashes.
Checksum = tuple[int, int]


@dataclass(frozen=True)
class Segment:
    """A key range with the checksum of its rows on one server."""

    key_range: KeyRange
    checksum: Checksum


@dataclass(frozen=True)
class TableQuery:
    """Everything needed to read one table the same way on both servers."""

    qualified: str
    key: KeySpec
    #: Compared columns, in the source table's order (columns on both sides only).
    columns: tuple[str, ...]
    #: Extra filter (``--where``/``--since``) applied on both servers, or empty.
    filter: Sql
    algorithm: Algorithm = "hashtext"

    def row_hash(self, alias: str = "t") -> str:
        """The per-row hash expression."""
        row = ", ".join(f"{alias}.{quote_ident(c)}" for c in self.columns)
        rendered = f"row({row})::text"
        if self.algorithm == "md5":
            return f"('x' || left(md5({rendered}), 16))::bit(64)::bigint"
        return f"hashtextextended({rendered}, 0)"

    def where(self, key_range: KeyRange, within: Sequence[KeyRange] = ()) -> Sql:
        """The ``where`` clause: rows in ``key_range`` and in any of ``within``, and the filter."""
        sql = Sql(" where ").extend(self.key.in_range(key_range))
        if within:
            sql.add(" and (")
            for i, segment in enumerate(within):
                sql.add(" or " if i else "").add("(").extend(self.key.in_range(segment)).add(")")
            sql.add(")")
        if self.filter.text:
            sql.add(" and (").extend(self.filter).add(")")
        return sql

    def checksums(
        self,
        side: Side,
        key_range: KeyRange,
        bounds: Sequence[KeyValue],
        within: Sequence[KeyRange] = (),
    ) -> list[Checksum]:
        """The checksums of the ``len(bounds) + 1`` segments ``bounds`` cut ``key_range`` into.

        ``within`` restricts the rows further (the mismatching segments of a level).
        """
        bucket = self.key.bucket(bounds)
        sql = Sql("select ").extend(bucket)
        sql.add(f", count(*), sum({self.row_hash()}) from {self.qualified} t")
        sql.extend(self.where(key_range, within)).add(" group by 1")
        found = {int(b): (int(n), int(s)) for b, n, s in side.query(sql.text, sql.args)}
        return [found.get(i, (0, 0)) for i in range(len(bounds) + 1)]

    def row_hashes(self, side: Side, segments: Sequence[KeyRange]) -> dict[KeyValue, int]:
        """Every row of the (small) ``segments`` as key -> hash."""
        return self._hashes(side, self.where(KeyRange(), segments))

    def hashes_of(self, side: Side, keys: Sequence[KeyValue]) -> dict[KeyValue, int]:
        """The hashes of the rows with ``keys`` (those that exist), ignoring the filter."""
        return self._hashes(side, self.key.join_keys(keys))

    def texts_of(
        self, side: Side, keys: Sequence[KeyValue], columns: Sequence[str] | None = None
    ) -> dict[KeyValue, tuple[str | None, ...]]:
        """``columns`` (default: the compared ones) of the rows with ``keys``, as text."""
        selected = self.columns if columns is None else columns
        values = ", ".join(f"t.{quote_ident(c)}::text" for c in selected)
        rows = self._by_key(side, values, self.key.join_keys(keys))
        return {key: tuple(rest) for key, rest in rows.items()}

    def _hashes(self, side: Side, clause: Sql) -> dict[KeyValue, int]:
        rows = self._by_key(side, self.row_hash(), clause)
        return {key: int(rest[0]) for key, rest in rows.items()}

    def _by_key(self, side: Side, values: str, clause: Sql) -> dict[KeyValue, Sequence[Any]]:
        """``select <key as text>, <values> from <table> t <clause>``, by key."""
        sql = Sql(f"select {self.key.as_text()}, {values} from {self.qualified} t").extend(clause)
        width = len(self.key.columns)
        return {tuple(row[:width]): row[width:] for row in side.query(sql.text, sql.args)}

    def boundaries(self, side: Side, key_range: KeyRange, rows: int, pieces: int) -> list[KeyValue]:
        """About ``pieces - 1`` keys cutting ``key_range`` (``rows`` rows) into equal parts.

        Read in key order through the key's index; only every n-th key travels.
        """
        step = max(1, -(-rows // pieces))
        sql = Sql(f"select {self.key.as_text('s')} from (select {self._key_columns()}, ")
        sql.add(f"row_number() over (order by {self.key.order_by()}) as rn from {self.qualified} t")
        sql.extend(self.where(key_range)).add(f") s where mod(s.rn, {step}) = 1 and s.rn > 1")
        sql.add(" order by s.rn")
        return [tuple(row) for row in side.query(sql.text, sql.args)]

    def sample_boundaries(
        self, side: Side, percent: float, pieces: int, method: str = "system"
    ) -> list[KeyValue]:
        """About ``pieces - 1`` quantile keys from a sample (``TABLESAMPLE system|bernoulli``).

        ``system`` samples whole blocks (reads only those); ``bernoulli`` rows
        (reads every block, but even a table of a few blocks gets a fair sample).
        """
        sql = Sql(f"select {self.key.as_text()} from {self.qualified} t tablesample {method} (")
        sql.add(f"{percent:.6f})").extend(self.where(KeyRange()))
        sql.add(f" order by {self.key.order_by()}")
        keys = [tuple(row) for row in side.query(sql.text, sql.args)]
        if len(keys) < 2:
            return []
        step = len(keys) / pieces
        picked = {int(i * step) for i in range(1, pieces)}
        return [keys[i] for i in sorted(picked) if 0 < i < len(keys)]

    def _key_columns(self) -> str:
        return ", ".join(f"t.{quote_ident(c)}" for c in self.key.columns)
