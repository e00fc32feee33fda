"""The durable journal: ``dbroute.journal`` and ``dbroute.intents`` on each database.

``dbroute.journal`` holds one row per (table, primary key) of *this* database
that changed without the change being copied to the other one (kind
``change``). The capture triggers write it in the writer's own transaction; a
successful mirror deletes it before that transaction commits, a failed one
leaves it (the transactional outbox), and :mod:`dbroute.dualwrite.replay`
copies the row later.

``dbroute.intents`` holds one row per transaction of the *other* database
that mirrored rows into this one before its own commit: its xid and the keys
(``[{"schema", "table", "keys": [[pk...], ...]}, ...]``). The writer deletes
it once its commit succeeded. A row left over (the writer died, or its
commit failed) is replay's: deleted if the writer committed, otherwise its
keys go into the other database's journal, and replay copies that database's
truth back over the rows. One row per transaction, not per
key: a mirror writes it with one plain insert (~10 us), where a journal entry
per key cost ~45 us of every mirror.

``dbroute.entries`` (a view) shows both as one list of ``(kind, table, pk)``
entries, kind ``change`` or ``intent``: what ``dbroute journal status``, the
phase checks and validation read.

Entries hold the primary-key values as PostgreSQL text (``value::text``) in
key-column order. The journal's unique key ``(kind, schema, table, pk)`` makes
an entry double as a lock on the key: every writer of a key upserts its entry,
so a replayer holding the entry (``FOR UPDATE``) is never overtaken by a writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "ADOPT_INTENTS",
    "ENTRIES",
    "INTENTS",
    "JOURNAL",
    "SCHEMA",
    "JournalStatus",
    "backlog",
    "entries_relation",
    "journal_exists",
    "pending_keys",
    "rejournal",
    "status",
]

SCHEMA = "dbroute"
JOURNAL = f"{SCHEMA}.journal"
INTENTS = f"{SCHEMA}.intents"
ENTRIES = f"{SCHEMA}.entries"

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
-- collect() looks its change entries up by (kind, xid): a plain (xid) index let
-- the planner walk the primary key's whole kind prefix, dead entries included.
create index if not exists journal_change_xid on {JOURNAL} (xid) where kind = 'change';
-- Intents have a table of their own (below); entries of kind 'intent' are
-- what processes of an earlier version wrote, which setup adopts (ADOPT_INTENTS).
drop index if exists {SCHEMA}.journal_intent_xid;
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
        drop view if exists {ENTRIES};  -- made again below
        alter table {JOURNAL}
            alter column kind type text collate "C",
            alter column table_schema type text collate "C",
            alter column table_name type text collate "C",
            alter column pk type text[] collate "C";
    end if;
end $$;
create table if not exists {INTENTS} (
    xid        xid8        primary key,
    keys       jsonb       not null,
    created_at timestamptz not null default clock_timestamp()
);
create or replace view {ENTRIES} as
    select kind, table_schema, table_name, pk, xid, created_at, attempts, conflict, last_error
    from {JOURNAL}
    union all
    select 'intent' collate "C", g->>'schema' collate "C", g->>'table' collate "C",
           array(select jsonb_array_elements_text(k)) collate "C",
           i.xid, i.created_at, 0, false, null::text
    from {INTENTS} i, jsonb_array_elements(i.keys) g, jsonb_array_elements(g->'keys') k;
"""

# Entries of kind 'intent', from an earlier version (one per key), become intent
# rows. Setup runs this last: processes of that version call the new functions
# once setup commits, and an entry one of them writes in between is adopted by
# the next setup (`dbroute journal status` shows it meanwhile).
ADOPT_INTENTS = f"""
with old as (
    delete from {JOURNAL} where kind = 'intent'
    returning table_schema, table_name, pk, xid, created_at
), per_table as (
    select xid, jsonb_build_object('schema', table_schema, 'table', table_name,
                                   'keys', jsonb_agg(to_jsonb(pk) order by pk)) as keys,
           min(created_at) as created_at
    from old group by xid, table_schema, table_name
)
insert into {INTENTS} as i (xid, keys, created_at)
select xid, jsonb_agg(keys), min(created_at) from per_table group by xid
on conflict (xid) do update set keys = i.keys || excluded.keys
"""


def journal_exists(connection: Connection) -> bool:
    """Whether ``dbroute.journal`` exists in the connected database."""
    found = connection.execute(text("select to_regclass(:name)"), {"name": JOURNAL}).scalar()
    return found is not None


def entries_relation(connection: Connection) -> str | None:
    """Where to read this database's entries of both kinds: ``dbroute.entries``.

    ``dbroute.journal`` alone where an earlier version's setup made no view
    (it kept intents in the journal), ``None`` where dual-write was never set up.
    """
    found = connection.execute(
        text("select coalesce(to_regclass(:entries), to_regclass(:journal))::text"),
        {"entries": ENTRIES, "journal": JOURNAL},
    ).scalar()
    return None if found is None else str(found)


def pending_keys(connection: Connection, schema: str, table: str) -> set[tuple[str, ...]]:
    """Primary keys of ``schema.table`` waiting in this database's journal.

    Each key is a tuple of the key columns' values rendered as PostgreSQL text
    (``value::text``) in key-column order. Intents count too: a row with an
    entry of either kind is not known to be equal on the two databases. Empty
    when the journal does not exist (dual-write never set up).
    """
    entries = entries_relation(connection)
    if entries is None:
        return set()
    rows = connection.execute(
        text(f"select distinct pk from {entries} where table_schema = :s and table_name = :t"),
        {"s": schema, "t": table},
    )
    return {tuple(row.pk) for row in rows}


def backlog(connection: Connection) -> int:
    """Entries of both kinds waiting in this database (0 when there is no journal)."""
    entries = entries_relation(connection)
    if entries is None:
        return 0
    return int(connection.execute(text(f"select count(*) from {entries}")).scalar_one())


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
    entries = entries_relation(connection)
    if entries is None:
        return []
    rows = connection.execute(
        text(
            f"""
            select kind, table_schema, table_name, count(*) as entries,
                   count(*) filter (where conflict) as conflicts, min(created_at) as oldest,
                   (array_agg(last_error order by created_at desc)
                       filter (where last_error is not null))[1] as last_error
            from {entries}
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
