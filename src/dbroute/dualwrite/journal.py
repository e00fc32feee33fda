"""The durable journal: ``dbroute.journal`` on each database.

One row per (kind, table, primary key) that is not known to be equal on both
databases. ``kind`` is

``change``
    a row of *this* database changed and the change has not (yet) been copied
    to the other one. The capture triggers write it in the writer's own
    transaction; a successful mirror deletes it before that transaction
    commits, a failed one leaves it (the transactional outbox), and
    :mod:`dbroute.dualwrite.replay` copies the row later.
``intent``
    the other database mirrored a row *into* this one before its own commit.
    The writer deletes the entry once its commit succeeded; if that commit
    failed (or the writer died) the entry stays and replay copies the other
    database's truth back over the row.

Entries hold the primary-key values as PostgreSQL text (``value::text``) in
key-column order. The unique key ``(kind, schema, table, pk)`` makes the entry
row double as a lock on the key: every writer of a key upserts its entry, so a
replayer holding the entry (``FOR UPDATE``) is never overtaken by a writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "JOURNAL",
    "SCHEMA",
    "JournalStatus",
    "backlog",
    "journal_exists",
    "pending_keys",
    "rejournal",
    "status",
]

SCHEMA = "dbroute"
JOURNAL = f"{SCHEMA}.journal"

JOURNAL_DDL = f"""
create table if not exists {JOURNAL} (
    kind         text collate "C"   not null check (kind in ('change', 'intent')),
    table_schema text collate "C"   not null,
    table_name   text collate "C"   not null,
    pk           text[] collate "C" not null,
    xid          xid8        not null,
    created_at   timestamptz not null default clock_timestamp(),
    attempts     integer     not null default 0,
    conflict     boolean     not null default false,
    last_error   text,
    primary key (kind, table_schema, table_name, pk)
);
-- One index per kind: collect and confirmations look entries up by (kind, xid);
-- a plain (xid) index let the planner walk the primary key's whole kind prefix,
-- dead entries included, instead.
create index if not exists journal_change_xid on {JOURNAL} (xid) where kind = 'change';
create index if not exists journal_intent_xid on {JOURNAL} (xid) where kind = 'intent';
drop index if exists {SCHEMA}.journal_xid;
-- The key columns compare byte-wise (COLLATE "C"): nothing here needs a
-- linguistic order, and a database's own collation (en_US.UTF-8 on RDS by
-- default) makes every journal write and key lookup pay for one (~10 us per
-- entry written and deleted, measured with ICU's en-US). Journals made before
-- this are converted once; their indexes are rebuilt, under a short lock.
do $$
begin
    if exists (select 1 from pg_attribute
               where attrelid = '{JOURNAL}'::regclass
                 and attname in ('kind', 'table_schema', 'table_name', 'pk')
                 and attcollation <> 'pg_catalog."C"'::regcollation) then
        alter table {JOURNAL}
            alter column kind type text collate "C",
            alter column table_schema type text collate "C",
            alter column table_name type text collate "C",
            alter column pk type text[] collate "C";
    end if;
end $$;
"""


def journal_exists(connection: Connection) -> bool:
    """Whether ``dbroute.journal`` exists in the connected database."""
    found = connection.execute(text("select to_regclass(:name)"), {"name": JOURNAL}).scalar()
    return found is not None


def pending_keys(connection: Connection, schema: str, table: str) -> set[tuple[str, ...]]:
    """Primary keys of ``schema.table`` waiting in this database's journal.

    Each key is a tuple of the key columns' values rendered as PostgreSQL text
    (``value::text``) in key-column order. Both kinds count: a row with an
    entry is not known to be equal on the two databases. Empty when the
    journal does not exist (dual-write never set up).
    """
    if not journal_exists(connection):
        return set()
    rows = connection.execute(
        text(f"select distinct pk from {JOURNAL} where table_schema = :s and table_name = :t"),
        {"s": schema, "t": table},
    )
    return {tuple(row.pk) for row in rows}


def backlog(connection: Connection) -> int:
    """Entries waiting in this database's journal (0 when there is no journal)."""
    if not journal_exists(connection):
        return 0
    return int(connection.execute(text(f"select count(*) from {JOURNAL}")).scalar_one())


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """The backlog of one table in one database's journal."""

    kind: str
    table_schema: str
    table_name: str
    entries: int
    conflicts: int
    oldest: datetime
    last_error: str | None


def status(connection: Connection) -> list[JournalStatus]:
    """The backlog grouped by kind and table, oldest first (``dbroute journal status``)."""
    if not journal_exists(connection):
        return []
    rows = connection.execute(
        text(
            f"""
            select kind, table_schema, table_name, count(*) as entries,
                   count(*) filter (where conflict) as conflicts, min(created_at) as oldest,
                   (array_agg(last_error order by created_at desc)
                       filter (where last_error is not null))[1] as last_error
            from {JOURNAL}
            group by kind, table_schema, table_name
            order by oldest
            """
        )
    )
    return [
        JournalStatus(
            r.kind, r.table_schema, r.table_name, r.entries, r.conflicts, r.oldest, r.last_error
        )
        for r in rows
    ]


def rejournal(connection: Connection, payload: str, error: str, conflicts: Any = None) -> int:
    """Put the keys of ``payload`` back into the journal, in ``connection``'s transaction.

    Used when a mirror failed: the entries commit with the user's write or not
    at all. ``payload`` is the JSON text of the images (``Changes.payload``);
    ``conflicts`` (a list of ``{schema, table, pk}``) marks entries
    that conflict. Returns the number of entries written.
    """
    written = connection.execute(
        text(
            "select dbroute.rejournal(cast(:payload as jsonb), :error, cast(:conflicts as jsonb))"
        ),
        {
            "payload": payload,
            "error": error[:500],
            "conflicts": json.dumps(conflicts) if conflicts is not None else None,
        },
    ).scalar_one()
    return int(written)
