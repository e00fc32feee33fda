"""From differing keys to a table report: which columns changed, which keys are pending.

Changed rows are read back column by column (as text) from both snapshots to
name the differing columns. Keys waiting in a dual-write journal on either
database (:func:`dbroute.dualwrite.journal.pending_keys`) are reported as
``pending``: replay will resolve them, they are not (yet) a defect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from dbroute.dualwrite.journal import pending_keys
from dbroute.validate.bisect import RawDiff
from dbroute.validate.checksum import TableQuery
from dbroute.validate.keys import KeyValue, batches
from dbroute.validate.report import ChangedRow, TableDiff
from dbroute.validate.snapshot import Side

__all__ = ["classify", "journal_keys"]


def journal_keys(side: Side, schema: str, table: str) -> set[KeyValue]:
    """Keys of ``schema.table`` in ``side``'s dual-write journal (read in its snapshot)."""
    savepoint = side.conn.begin_nested()
    try:
        return pending_keys(side.conn, schema, table)
    finally:
        savepoint.rollback()


def classify(
    query: TableQuery, neon: Side, rds: Side, raw: RawDiff, result: TableDiff
) -> TableDiff:
    """Fill ``result`` from ``raw``: pending keys split off, changed columns named."""
    pending: set[KeyValue] = set()
    if raw.only_in_neon or raw.only_in_rds or raw.changed:
        pending = journal_keys(neon, result.schema, result.table) | journal_keys(
            rds, result.schema, result.table
        )
    result.pending = sorted(
        k for k in (*raw.only_in_neon, *raw.only_in_rds, *raw.changed) if k in pending
    )
    result.only_in_neon = sorted(k for k in raw.only_in_neon if k not in pending)
    result.only_in_rds = sorted(k for k in raw.only_in_rds if k not in pending)
    changed = [k for k in raw.changed if k not in pending]
    result.changed = sorted(_changed_columns(query, neon, rds, changed), key=lambda c: c.key)
    result.rows_neon, result.rows_rds = raw.rows_neon, raw.rows_rds
    result.queries, result.rows_downloaded = raw.queries, raw.rows_downloaded
    return result


def _changed_columns(
    query: TableQuery, neon: Side, rds: Side, keys: Sequence[KeyValue]
) -> Iterator[ChangedRow]:
    for batch in batches(keys):
        ours, theirs = query.texts_of(neon, batch), query.texts_of(rds, batch)
        for key in batch:
            a, b = ours[key], theirs[key]
            columns = tuple(c for c, x, y in zip(query.columns, a, b, strict=True) if x != y)
            # Same text everywhere but a different hash cannot happen with one rendering;
            # name the row anyway rather than drop it.
            yield ChangedRow(key, columns or query.columns)
