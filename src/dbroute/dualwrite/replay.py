"""``dbroute replay``: copy journaled rows to the other database until both agree.

Two passes, on both databases:

1. *Intents*: an intent row on database X whose writer (a transaction on the
   other database, Y) is no longer running was never confirmed. If the writer
   committed (``pg_xact_status``), X holds what it committed and the row
   goes; if it aborted, its keys become ``change`` entries in Y's journal,
   which commit before the row goes, and the next pass copies Y's truth back
   over them.
2. *Changes*: for each ``change`` entry of database X, the current row of X
   (or its absence) is copied to the other database.

Entries are taken ``FOR UPDATE SKIP LOCKED`` in key order, so several
replayers split the work and a writer changing a key waits for the replayer
holding its entry (every writer upserts the key's entry): no stale image can
overwrite a newer one. Entries and intent rows are deleted only in a
transaction that commits after their destination did, so a crash anywhere
leaves them to the next run; copying a row twice is harmless (idempotent).

Conflicts (the destination's journal also holds a change of the key) are
reported and left, unless ``prefer`` names the side whose copy wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import SQLAlchemyError

from dbroute.dualwrite.apply import describe_error
from dbroute.dualwrite.conflicts import Conflict, report_conflicts
from dbroute.dualwrite.journal import INTENTS, JOURNAL, rejournal
from dbroute.target import Target
from dbroute.telemetry import DUALWRITE_REPLAYED, target_attributes

__all__ = ["ReplayReport", "replay"]

log = logging.getLogger("dbroute.dualwrite")

Key = tuple[str, str, tuple[str, ...]]

_TAKE = text(
    f"""
    select table_schema, table_name, pk, xid::text as xid from {JOURNAL}
    where kind = 'change' and (table_schema, table_name, pk) > (:s, :t, cast(:pk as text[]))
    order by table_schema, table_name, pk
    limit :limit
    for update skip locked
    """
)
_ENTRIES = "jsonb_to_recordset(cast(:keys as jsonb)) as e(s text, t text, pk text[])"
_CHANGED_HERE = text(
    f"""
    select j.table_schema, j.table_name, j.pk from {JOURNAL} j join {_ENTRIES}
      on j.kind = 'change' and j.table_schema = e.s and j.table_name = e.t and j.pk = e.pk
    """
)
_DELETE = text(
    f"""
    delete from {JOURNAL} j using {_ENTRIES}
    where j.kind = 'change' and j.table_schema = e.s and j.table_name = e.t and j.pk = e.pk
    """
)
_MARK = text(
    f"""
    update {JOURNAL} j set conflict = true, attempts = attempts + 1,
        last_error = 'conflict: changed on both databases'
    from {_ENTRIES}
    where j.kind = 'change' and j.table_schema = e.s and j.table_name = e.t and j.pk = e.pk
    """
)
_TAKE_INTENTS = text(
    f"""
    select xid::text as xid, keys::text as keys from {INTENTS}
    where xid > cast(:after as xid8)
    order by xid
    limit :limit
    for update skip locked
    """
)
_DELETE_INTENTS = text(f"delete from {INTENTS} where xid = any(cast(:xids as xid8[]))")
# 'committed', 'aborted', 'in progress', or null for an xid too old to tell.
_STATUS = text(
    "select x, pg_xact_status(cast(x as xid8)) as status from unnest(cast(:xids as text[])) x"
)
_IMAGES = text("select dbroute.images(cast(:groups as jsonb))::text")
_APPLY = text("select dbroute.apply(cast(:payload as jsonb), null, :force)")
_TIMEOUTS = text(
    "select set_config('lock_timeout', :lock, true), set_config('statement_timeout', :stmt, true)"
)


@dataclass
class ReplayReport:
    """What one replay did."""

    replayed: int = 0
    #: Conflicts found and left in the journals (resolve with ``prefer``).
    conflicts: list[Conflict] = field(default_factory=list)
    #: Conflicts settled in favour of ``prefer``.
    resolved: int = 0
    #: Keys of intent rows whose writer was still running: left for the next run.
    skipped: int = 0
    #: One line per direction that stopped on an error (destination down...).
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing left behind for a reason other than a running writer."""
        return not self.errors and not self.conflicts


def _as_json(keys: list[Key]) -> str:
    return json.dumps([{"s": s, "t": t, "pk": list(pk)} for s, t, pk in keys])


def _groups(keys: list[Key]) -> str:
    grouped: dict[tuple[str, str], list[list[str]]] = {}
    for s, t, pk in keys:
        grouped.setdefault((s, t), []).append(list(pk))
    return json.dumps([{"schema": s, "table": t, "keys": k} for (s, t), k in grouped.items()])


@dataclass(frozen=True)
class _Direction:
    """Copy the ``change`` entries of ``source``'s journal to the other database."""

    source: Target
    prefer: Target | None
    limit: int
    timeouts: Mapping[str, str]

    @property
    def destination(self) -> Target:
        return self.source.other

    def batch(
        self, src: Connection, dst: Connection, after: Key, report: ReplayReport
    ) -> Key | None:
        """Replay one batch of entries after ``after``; the last key taken, or None when done."""
        for connection in (src, dst):
            connection.execute(_TIMEOUTS, self.timeouts)
        rows = src.execute(
            _TAKE, {"s": after[0], "t": after[1], "pk": list(after[2]), "limit": self.limit}
        ).all()
        if not rows:
            return None
        keys: list[Key] = [(r.table_schema, r.table_name, tuple(r.pk)) for r in rows]
        conflicted = {
            (r.table_schema, r.table_name, tuple(r.pk))
            for r in dst.execute(_CHANGED_HERE, {"keys": _as_json(keys)})
        }
        force = bool(conflicted) and self.prefer is self.source
        if conflicted and force:
            # The preferred side wins: the other side's change entries go.
            dst.execute(_DELETE, {"keys": _as_json(sorted(conflicted))})
            report.resolved += len(conflicted)
        elif conflicted:
            held = sorted(conflicted)
            src.execute(_MARK, {"keys": _as_json(held)})
            found = [Conflict(s, t, pk, self.source, "replay") for s, t, pk in held]
            report_conflicts(found)
            report.conflicts.extend(found)
            keys = [k for k in keys if k not in conflicted]
        if keys:
            payload = src.execute(_IMAGES, {"groups": _groups(keys)}).scalar_one()
            dst.execute(_APPLY, {"payload": payload, "force": force})
            src.execute(_DELETE, {"keys": _as_json(keys)})
            report.replayed += len(keys)
            DUALWRITE_REPLAYED.add(len(keys), target_attributes(self.source))
        last = rows[-1]
        return (last.table_schema, last.table_name, tuple(last.pk))


def replay(
    engines: Mapping[Target, Engine],
    *,
    batch_size: int = 500,
    prefer: Target | None = None,
    lock_timeout_ms: int = 5000,
    statement_timeout_ms: int = 60_000,
) -> ReplayReport:
    """Replay every journal entry that can be replayed now, on both databases.

    Safe to run concurrently and repeatedly. ``prefer`` settles conflicts in
    favour of that database's copy; without it they are reported and left.
    """
    report = ReplayReport()
    timeouts = {"lock": f"{lock_timeout_ms}ms", "stmt": f"{statement_timeout_ms}ms"}
    for here in Target:  # first: their keys join the change entries copied next
        _settle_intents(here, engines, batch_size, timeouts, report)
    for source in Target:
        _run(_Direction(source, prefer, batch_size, timeouts), engines, report)
    return report


def _settle_intents(
    here: Target,
    engines: Mapping[Target, Engine],
    limit: int,
    timeouts: Mapping[str, str],
    report: ReplayReport,
) -> None:
    """Settle ``here``'s unconfirmed intent rows by their writers' fate.

    A writer that committed left here exactly what it committed (later changes
    of its rows went their own way): only its confirmation was lost, and the
    row goes. One that aborted, or too long ago to tell, may have left rows
    here that the other database never committed: its keys become change
    entries there, which commit before the row goes, and the change pass
    copies that database's truth back over them.
    """
    writers = here.other
    after = "0"
    while True:
        try:
            with engines[here].connect() as dst, dst.begin():
                dst.execute(_TIMEOUTS, timeouts)
                rows = dst.execute(_TAKE_INTENTS, {"after": after, "limit": limit}).all()
                if not rows:
                    return
                after = rows[-1].xid
                with engines[writers].connect() as src, src.begin():
                    src.execute(_TIMEOUTS, timeouts)
                    found = src.execute(_STATUS, {"xids": [r.xid for r in rows]})
                    status: dict[str, str | None] = {x: state for x, state in found}
                    running = [r for r in rows if status[r.xid] == "in progress"]
                    done = [r for r in rows if status[r.xid] != "in progress"]
                    aborted = [r for r in done if status[r.xid] != "committed"]
                    report.skipped += sum(_keys(r) for r in running)
                    undone = [g for r in aborted for g in _groups_of(r)]
                    if undone:
                        error = f"{here.value} holds rows mirrored by a transaction that aborted"
                        rejournal(src, json.dumps(undone), error)
                # The entries committed on the writers' side: only now the rows go.
                if done:
                    dst.execute(_DELETE_INTENTS, {"xids": [r.xid for r in done]})
        except SQLAlchemyError as exc:
            _stopped(f"{here.value} intents → {writers.value} journal", exc, report)
            return


def _groups_of(intent: Row[Any]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = json.loads(intent.keys)
    return groups


def _keys(intent: Row[Any]) -> int:
    return sum(len(g["keys"]) for g in _groups_of(intent))


def _run(direction: _Direction, engines: Mapping[Target, Engine], report: ReplayReport) -> None:
    after: Key | None = ("", "", ())
    source, destination = engines[direction.source], engines[direction.destination]
    while after is not None:
        try:
            # Exit order: the destination commits first, then the source.
            with source.connect() as src, destination.connect() as dst, src.begin(), dst.begin():
                after = direction.batch(src, dst, after, report)
        except SQLAlchemyError as exc:
            line = f"{direction.source.value} → {direction.destination.value}"
            _stopped(f"{line} (change entries)", exc, report)
            return


def _stopped(where: str, exc: SQLAlchemyError, report: ReplayReport) -> None:
    _, message = describe_error(exc)
    line = f"{where}: {message}"
    log.warning("replay stopped: %s", line)
    report.errors.append(line)
