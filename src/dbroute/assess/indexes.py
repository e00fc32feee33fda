"""Which indexes are redundant: PgHero's duplicate_indexes rule, as a pure function.

An index is a duplicate when another index on the same table, with the same
access method, predicate and INCLUDE columns, covers it: its key columns
(expressions included, as ``pg_get_indexdef`` renders them) are a leading
prefix of the other's (btree) or the same (other methods). A unique index is kept unless
the one covering it has exactly the same columns and is unique too (the
uniqueness would otherwise be lost). Of two identical indexes the one with
the later name is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Duplicate", "IndexDef", "find_duplicates"]


@dataclass(frozen=True, slots=True)
class IndexDef:
    """What the duplicate rule needs to know about one index."""

    table: str
    name: str
    columns: tuple[str, ...]
    method: str = "btree"
    unique: bool = False
    #: ``pg_get_expr`` of the partial-index predicate ('' when none).
    predicate: str = ""
    #: ``INCLUDE`` columns (not part of the key).
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Duplicate:
    """``index`` is covered by ``covered_by`` and can be dropped."""

    index: IndexDef
    covered_by: IndexDef


def _covers(big: IndexDef, small: IndexDef) -> bool:
    if (big.table, big.method, big.predicate, big.include) != (
        small.table,
        small.method,
        small.predicate,
        small.include,
    ):
        return False
    # Only a btree answers lookups on a leading prefix of its columns.
    prefix = big.columns[: len(small.columns)] if big.method == "btree" else big.columns
    if prefix != small.columns:
        return False
    if small.unique:
        return big.unique and big.columns == small.columns
    return True


def find_duplicates(indexes: Sequence[IndexDef]) -> list[Duplicate]:
    """The redundant indexes among ``indexes``, each with one index that covers it."""
    found = []
    for small in indexes:
        for big in indexes:
            if big is small or not _covers(big, small):
                continue
            # Identical pair: report only one of the two (the later name).
            if _covers(small, big) and small.name < big.name:
                continue
            found.append(Duplicate(small, big))
            break
    return found
