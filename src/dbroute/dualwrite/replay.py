"""``dbroute replay``: copy journaled rows to the other database until both agree.

For each journal entry the current row of the *source* (or its absence) is
copied to the *destination*:

* ``change`` entries of database X: source X, destination the other one;
* ``intent`` entries of database X: source the other one (it mirrored into X
  before its own commit), destination X; skipped while that writer's
  transaction is still running (``pg_xact_status``).

Entries are taken ``FOR UPDATE SKIP LOCKED`` in key order, so several
replayers split the work and a writer changing a key waits for the replayer
holding its entry (every writer upserts the key's entry): no stale image can
overwrite a newer one. Entries are deleted only in a transaction that commits
after the destination did, so a crash anywhere leaves them to the next run;
copying a row twice is harmless (idempotent).

Conflicts (the destination's journal also holds a change of the key) are
reported and left, unless ``prefer`` names the side whose copy wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dbroute.dualwrite.apply import describe_error
from dbroute.dualwrite.conflicts import Conflict, report_conflicts
from dbroute.dualwrite.journal import JOURNAL
from dbroute.target import Target
from dbroute.telemetry import DUALWRITE_REPLAYED, target_attributes

__all__ = ["ReplayReport", "replay"]

log = logging.getLogger("dbroute.dualwrite")

Key = tuple[str, str, tuple[str, ...]]

_TAKE = text(
    f"""
    select table_schema, table_name, pk, xid::text as xid from {JOURNAL}
    where kind = :kind and (table_schema, table_name, pk) > (:s, :t, cast(:pk as text[]))
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
    where j.kind = :kind and j.table_schema = e.s and j.table_name = e.t and j.pk = e.pk
    """
)
_MARK = text(
    f"""
    update {JOURNAL} j set conflict = true, attempts = attempts + 1,
        last_error = 'conflict: changed on both databases'
    from {_ENTRIES}
    where j.kind = :kind and j.table_schema = e.s and j.table_name = e.t and j.pk = e.pk
    """
)
_RUNNING = text(
    "select x from unnest(cast(:xids as text[])) x "
    "where pg_xact_status(cast(x as xid8)) = 'in progress'"
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
    #: Intent entries whose writer was still running: left for the next run.
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
    kind: str  # which journal entries: "change" (on source) or "intent" (on destination)
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
        journal = src if self.kind == "change" else dst
        rows = journal.execute(
            _TAKE,
            {
                "kind": self.kind,
                "s": after[0],
                "t": after[1],
                "pk": list(after[2]),
                "limit": self.limit,
            },
        ).all()
        if not rows:
            return None
        keys: list[Key] = [(r.table_schema, r.table_name, tuple(r.pk)) for r in rows]
        if self.kind == "intent":
            running = set(src.execute(_RUNNING, {"xids": [r.xid for r in rows]}).scalars())
            keys = [k for k, r in zip(keys, rows, strict=True) if r.xid not in running]
            report.skipped += len(rows) - len(keys)
        conflicted = (
            {
                (r.table_schema, r.table_name, tuple(r.pk))
                for r in dst.execute(_CHANGED_HERE, {"keys": _as_json(keys)})
            }
            if keys
            else set()
        )
        force = bool(conflicted) and self.prefer is self.source
        if conflicted and force:
            # The preferred side wins: the other side's change entries go.
            dst.execute(_DELETE, {"kind": "change", "keys": _as_json(sorted(conflicted))})
            report.resolved += len(conflicted)
        elif conflicted:
            held = sorted(conflicted)
            journal.execute(_MARK, {"kind": self.kind, "keys": _as_json(held)})
            found = [Conflict(s, t, pk, self.source, "replay") for s, t, pk in held]
            report_conflicts(found)
            report.conflicts.extend(found)
            keys = [k for k in keys if k not in conflicted]
        if keys:
            payload = src.execute(_IMAGES, {"groups": _groups(keys)}).scalar_one()
            dst.execute(_APPLY, {"payload": payload, "force": force})
            journal.execute(_DELETE, {"kind": self.kind, "keys": _as_json(keys)})
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
    for journal_on in Target:
        for kind in ("change", "intent"):
            source = journal_on if kind == "change" else journal_on.other
            direction = _Direction(kind, source, prefer, batch_size, timeouts)
            _run(direction, engines[source], engines[direction.destination], report)
    return report


def _run(
    direction: _Direction, src_engine: Engine, dst_engine: Engine, report: ReplayReport
) -> None:
    after: Key | None = ("", "", ())
    while after is not None:
        try:
            # Exit order: the destination commits first, then the source.
            with src_engine.connect() as src, dst_engine.connect() as dst, src.begin(), dst.begin():
                after = direction.batch(src, dst, after, report)
        except SQLAlchemyError as exc:
            _, message = describe_error(exc)
            line = (
                f"{direction.source.value} → {direction.destination.value} "
                f"({direction.kind} entries): {message}"
            )
            log.warning("replay stopped: %s", line)
            report.errors.append(line)
            return
