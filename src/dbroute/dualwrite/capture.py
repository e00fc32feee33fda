"""Change capture: the triggers that record each changed row's key in the journal.

Every captured table gets three statement-level triggers with transition
tables (insert, update, delete) calling its generated ``dbroute.dw_capture_N()``
(see :mod:`dbroute.dualwrite.codegen`), which writes
``(table, primary key)`` of every changed row into ``dbroute.journal`` in the
writer's own transaction. Being in the database, they see every way rows
change: ORM flushes, Core and raw SQL, ``ON DELETE CASCADE``, the
application's own triggers, and writes from outside the application (psql,
cron jobs). A fourth trigger refuses ``TRUNCATE``, which cannot be mirrored
row by row.

:func:`collect` is the other half: just before the writer commits, it takes
the transaction's entries out of the journal and returns the rows to mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.util import await_only

from dbroute.sql import ident

__all__ = [
    "TRIGGER_PREFIX",
    "CapturedTable",
    "Changes",
    "collect",
    "collected",
    "install_triggers_sql",
]

TRIGGER_PREFIX = "dbroute_"

_EVENTS = {
    "insert": "insert on {table} referencing new table as dbroute_new",
    "update": "update on {table} referencing old table as dbroute_old new table as dbroute_new",
    "delete": "delete on {table} referencing old table as dbroute_old",
}


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """A table dual-write captures: its name, key columns and types, and columns.

    ``columns`` are those an insert may set, in order; ``all_columns`` every
    column, generated ones included.
    """

    schema: str
    name: str
    pk_columns: tuple[str, ...]
    pk_types: tuple[str, ...]
    columns: tuple[str, ...] = ()
    all_columns: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        """``"schema"."name"``, quoted for SQL."""
        return f"{ident(self.schema)}.{ident(self.name)}"

    @property
    def key_expression(self) -> str:
        """The key of row ``r`` as a text array, e.g. ``array[r."id"::text]``."""
        return "array[" + ", ".join(f"r.{ident(c)}::text" for c in self.pk_columns) + "]"

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def install_triggers_sql(table: CapturedTable, n: int) -> list[str]:
    """Statements creating the capture and truncate triggers of ``table`` (position ``n``)."""
    statements = []
    for event, clause in _EVENTS.items():
        statements.append(
            f"create trigger {TRIGGER_PREFIX}capture_{event} after "
            + clause.format(table=table.qualified)
            + f" for each statement execute function dbroute.dw_capture_{n}()"
        )
    statements.append(
        f"create trigger {TRIGGER_PREFIX}truncate before truncate on {table.qualified} "
        "for each statement execute function dbroute.refuse_truncate()"
    )
    return statements


@dataclass(frozen=True, slots=True)
class Changes:
    """Row images to copy: what :func:`collect` or a replay batch read from the source.

    ``payload`` is the JSON text ``dbroute.apply()`` takes: one group per
    table, with ``keys`` (every key concerned), ``rows`` (current images) and
    ``gone`` (keys whose row no longer exists); ``None`` when the transaction
    was too large to mirror and its keys stay journaled. ``rows`` counts the keys.
    ``table``: the source's position of the only table written (``None`` for
    several), whose ``dbroute.dw_apply_<table>()`` the mirror calls directly.
    """

    payload: str | None
    rows: int
    xid: str | None = None
    table: int | None = None
    #: Statements the capture triggers counted, 2 meaning more (``collect_checked()``).
    notices: int = 0

    def __bool__(self) -> bool:
        return self.rows > 0


# Text out: the images go to the secondary as they came, unparsed.
_COLLECT = "select * from dbroute.collect(%s::integer)"


def collect(connection: Connection, max_rows: int | None = None) -> Changes:
    """Take this transaction's captured keys out of the journal; return their row images.

    Runs in the writer's transaction, which still holds the rows' locks, so the
    images are exactly what this transaction is about to commit. Above
    ``max_rows`` keys nothing is taken: ``payload`` is ``None`` and the entries
    commit with the transaction, for replay. Straight on the driver
    connection: this is every dual-written commit's path.
    """
    driver: Any = connection.connection.driver_connection
    if connection.dialect.is_async:
        cursor = await_only(driver.execute(_COLLECT, (max_rows,)))
        row = await_only(cursor.fetchone())
    else:
        row = driver.execute(_COLLECT, (max_rows,)).fetchone()
    return collected(row)


def collected(row: Sequence[Any]) -> Changes:
    """:class:`Changes` from a row of ``dbroute.collect()``."""
    # Fewer columns until `dbroute setup` runs again after an upgrade: no direct
    # path, no notices.
    return Changes(
        row[0], row[1], row[2], row[3] if len(row) > 3 else None, row[4] if len(row) > 4 else 0
    )
