"""A captured query result: column names, column types and rows, as the driver returned them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FIRST_USER_OID", "Column", "ResultSet"]

#: PostgreSQL assigns OIDs below this to built-in types: equal on every server.
#: Types created by users (enums, domains, composites) get other OIDs per database.
FIRST_USER_OID = 16384


@dataclass(frozen=True, slots=True)
class Column:
    """One result column: its name and the OID of its PostgreSQL type."""

    name: str
    type_oid: int


@dataclass(frozen=True, slots=True, eq=False)
class ResultSet:
    """The rows one database returned for a statement (psycopg values, before SQLAlchemy).

    ``table_oids`` names, per column, the table and column number it was read
    from (``(0, 0)`` for computed columns), on the database that produced it;
    shadow reads use it to look primary keys up in the dual-write journal.
    """

    columns: tuple[Column, ...]
    rows: Sequence[tuple[Any, ...]]
    table_oids: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return len(self.rows)
