"""Change capture: the triggers that record each changed row's key in the journal.

Every captured table gets three statement-level triggers with transition
tables (insert, update, delete) calling ``dbroute.capture()``, which writes
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

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "TRIGGER_PREFIX",
    "CapturedTable",
    "Changes",
    "collect",
    "drop_triggers_sql",
    "install_triggers_sql",
]

TRIGGER_PREFIX = "dbroute_"

_EVENTS = {
    "insert": "insert on {table} referencing new table as dbroute_new",
    "update": "update on {table} referencing old table as dbroute_old new table as dbroute_new",
    "delete": "delete on {table} referencing old table as dbroute_old",
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """A table dual-write captures: its name and primary-key columns with their types."""

    schema: str
    name: str
    pk_columns: tuple[str, ...]
    pk_types: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """``"schema"."name"``, quoted for SQL."""
        return f"{_ident(self.schema)}.{_ident(self.name)}"

    @property
    def key_expression(self) -> str:
        """The key of row ``r`` as a text array, e.g. ``array[r."id"::text]``."""
        return "array[" + ", ".join(f"r.{_ident(c)}::text" for c in self.pk_columns) + "]"

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def install_triggers_sql(table: CapturedTable) -> list[str]:
    """Statements (re)creating ``table``'s capture and truncate triggers."""
    statements = drop_triggers_sql(table)
    argument = _literal(table.key_expression)
    for event, clause in _EVENTS.items():
        statements.append(
            f"create trigger {TRIGGER_PREFIX}capture_{event} after "
            + clause.format(table=table.qualified)
            + f" for each statement execute function dbroute.capture({argument})"
        )
    statements.append(
        f"create trigger {TRIGGER_PREFIX}truncate before truncate on {table.qualified} "
        "for each statement execute function dbroute.refuse_truncate()"
    )
    return statements


def drop_triggers_sql(table: CapturedTable) -> list[str]:
    """Statements removing ``table``'s dbroute triggers (idempotent)."""
    names = [f"{TRIGGER_PREFIX}capture_{event}" for event in _EVENTS]
    names.append(f"{TRIGGER_PREFIX}truncate")
    return [f"drop trigger if exists {name} on {table.qualified}" for name in names]


@dataclass(frozen=True, slots=True)
class Changes:
    """Row images to copy: what :func:`collect` or a replay batch read from the source.

    ``payload`` is the JSON ``dbroute.apply()`` takes: one group per table, with
    ``keys`` (every key concerned), ``rows`` (current images) and ``gone``
    (keys whose row no longer exists).
    """

    payload: list[dict[str, Any]]
    xid: str | None = None

    @property
    def rows(self) -> int:
        """How many keys the changes cover."""
        return sum(len(group["keys"]) for group in self.payload)

    def __bool__(self) -> bool:
        return bool(self.payload)


def collect(connection: Connection) -> Changes:
    """Take this transaction's captured keys out of the journal; return their row images.

    Runs in the writer's transaction, which still holds the rows' locks, so the
    images are exactly what this transaction is about to commit.
    """
    row = connection.execute(
        text("select dbroute.collect() as payload, pg_current_xact_id_if_assigned()::text as xid")
    ).one()
    return Changes(row.payload, row.xid)
