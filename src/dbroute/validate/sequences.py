"""Sequence resync: the step runbooks forget after ``pg_restore``, and the ramp's headroom.

Rows copied with their keys do not advance the target's sequences, and the
first insert there fails with a duplicate key. For every sequence of the
target (``serial``, identity and free-standing ones) the next value becomes at
least both the source sequence's next value and one step past the largest
key in the column it feeds. Sequences already far enough are left alone, so
running it twice changes nothing.

During a ramp both databases generate keys, and the mirror copies rows, not
sequence positions: two sequences at the same position hand out the same
ids. ``headroom`` puts the target's next value that many generated values
past the source's, so the two hand out ids from disjoint ranges (the source
below, the target above) until the source has used its headroom up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from dbroute.errors import ConfigurationError, SequenceSyncError
from dbroute.sql import sequences_sql
from dbroute.target import Target
from dbroute.validate.catalog import schema_filter
from dbroute.validate.connect import Database, engine_pair
from dbroute.validate.keys import quote_ident
from dbroute.validate.snapshot import Side, open_side

__all__ = ["SequenceChange", "sync_sequences", "synced_next"]

#: The values an integer column can hold: a sequence feeding a narrower column
#: (``integer`` column, ``bigint`` sequence) is bounded by the column.
_TYPE_RANGE = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

#: How long the sync waits for transactions holding a sequence it must move.
_LOCK_TIMEOUT = "2s"


@dataclass(frozen=True)
class SequenceChange:
    """One sequence of the target: its next value before and after the sync."""

    sequence: str
    column: str | None
    before: int
    after: int
    source_next: int | None
    extreme_key: int | None

    @property
    def changed(self) -> bool:
        """Whether the sync moved (or would move) this sequence."""
        return self.after != self.before

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "changed": self.changed}


def synced_next(
    current: int,
    increment: int,
    *,
    source_next: int | None,
    extreme_key: int | None,
    headroom: int = 0,
) -> int:
    """The next value a target sequence must have after the sync.

    Ascending: ``max(current, source_next + headroom * increment, extreme_key +
    increment)``; descending mirrors it with ``min``. ``headroom`` counts
    generated values. Never behind ``current``: the sync only moves forward.
    """
    best = max if increment > 0 else min
    wanted = current
    if source_next is not None:
        wanted = best(wanted, source_next + headroom * increment)
    if extreme_key is not None:
        wanted = best(wanted, extreme_key + increment)
    return wanted


def sync_sequences(
    neon: Database,
    rds: Database,
    source: Target,
    *,
    dry_run: bool = False,
    schemas: Sequence[str] | None = None,
    headroom: int = 0,
) -> list[SequenceChange]:
    """Move every sequence of ``source.other`` to at least the source's and the keys' position.

    With ``headroom`` N, each target sequence starts at least N generated
    values past the source sequence's next value (``docs/dual-write.md``,
    "Generated keys during a ramp"). Returns one entry per target sequence
    (``changed`` tells which moved). With ``dry_run`` nothing is written.
    Idempotent. A sequence that must move is locked (``ALTER SEQUENCE``) and
    re-read first, so inserts on the target meanwhile never make it go back.

    Raises :class:`~dbroute.errors.SequenceSyncError` when a sequence would
    leave its or its column's range (saying how much headroom fits).
    """
    if headroom < 0:
        raise ConfigurationError(f"headroom must be 0 or more, got {headroom}")
    source = Target(source)
    with engine_pair(neon, rds, connections=1) as (ours, theirs):
        engines: dict[Target, Engine] = {Target.NEON: ours, Target.RDS: theirs}
        with open_side(engines[source], source) as reader:
            source_next = {
                name: state.next_value for name, state in _sequences(reader, schemas).items()
            }
        with open_side(engines[source.other], source.other, read_only=dry_run) as writer:
            if not dry_run:
                writer.conn.exec_driver_sql(f"set local lock_timeout = '{_LOCK_TIMEOUT}'")
            changes = [
                _sync_one(writer, name, state, source_next.get(name), headroom, dry_run)
                for name, state in _sequences(writer, schemas).items()
            ]
    return changes


@dataclass(frozen=True)
class _State:
    regclass: str
    next_value: int
    increment: int
    low: int
    high: int
    owner: tuple[str, str, str] | None  # schema, table, column
    column_type: str | None

    @property
    def column(self) -> str | None:
        return None if self.owner is None else ".".join(self.owner)

    @property
    def bounds(self) -> tuple[int, int, str]:
        """The values the sequence may take: its own range narrowed to its column's type."""
        low, high = _TYPE_RANGE.get(self.column_type or "", (self.low, self.high))
        if low <= self.low and self.high <= high:
            return self.low, self.high, "its range"
        return (
            max(low, self.low),
            min(high, self.high),
            f"the range of its {self.column_type} column",
        )


def _sequences(side: Side, schemas: Sequence[str] | None) -> dict[str, _State]:
    """Every user sequence by ``schema.sequence``."""
    where, params = schema_filter("s.schemaname", schemas)
    found = {}
    for row in side.conn.execute(text(sequences_sql(where)), params).all():
        schema, name, _, _, increment, low, high, tschema, table, column, column_type = row
        regclass = f"{quote_ident(schema)}.{quote_ident(name)}"
        found[f"{schema}.{name}"] = _State(
            regclass,
            _next_value(side, regclass, int(increment)),
            int(increment),
            int(low),
            int(high),
            None if column is None else (tschema, table, column),
            column_type,
        )
    return found


def _next_value(side: Side, regclass: str, increment: int) -> int:
    # pg_sequences shows NULL after setval(..., false): read the sequence itself.
    last, called = side.query(f"select last_value, is_called from {regclass}")[0]
    return int(last + increment if called else last)


def _sync_one(
    side: Side,
    name: str,
    state: _State,
    source_next: int | None,
    headroom: int,
    dry_run: bool,
) -> SequenceChange:
    before = state.next_value
    extreme, wanted = _wanted(side, name, state, before, source_next, headroom)
    if wanted != before and not dry_run:
        _lock(side, name, state)
        # Under the lock nobody hands out values: decide again on the fresh position.
        before = _next_value(side, state.regclass, state.increment)
        extreme, wanted = _wanted(side, name, state, before, source_next, headroom)
        if wanted != before:
            # is_called = false: the next nextval() returns exactly ``wanted``.
            side.query("select setval(%s::regclass, %s, false)", [state.regclass, wanted])
    return SequenceChange(name, state.column, before, wanted, source_next, extreme)


def _wanted(
    side: Side, name: str, state: _State, current: int, source_next: int | None, headroom: int
) -> tuple[int | None, int]:
    """The column's extreme key and the next value wanted (range-checked when it moves)."""
    extreme = _extreme_key(side, state.owner, state.increment > 0)
    wanted = synced_next(
        current, state.increment, source_next=source_next, extreme_key=extreme, headroom=headroom
    )
    if wanted != current:
        _check_range(name, state, current, wanted, source_next, extreme, headroom)
    return extreme, wanted


def _lock(side: Side, name: str, state: _State) -> None:
    """Keep others from drawing values until the sync commits, so no move goes backwards.

    A no-op ``ALTER SEQUENCE`` blocks ``nextval()`` but needs the sequence's
    owner; otherwise locking the owning table against writes blocks the
    inserts that draw from it (UPDATE privilege is enough).
    """
    attempts = [f"alter sequence {state.regclass} increment by {state.increment}"]
    if state.owner is not None:
        table = ".".join(quote_ident(part) for part in state.owner[:2])
        attempts.append(f"lock table {table} in share row exclusive mode")
    for number, statement in enumerate(attempts, 1):
        savepoint = side.conn.begin_nested()
        try:
            side.conn.exec_driver_sql(statement)
        except DBAPIError as exc:
            savepoint.rollback()
            code = getattr(exc.orig, "sqlstate", None)
            if code == "42501" and number < len(attempts):  # not the owner: lock the table
                continue
            if code == "55P03":  # lock_not_available
                raise SequenceSyncError(
                    f"sequence {name} stayed in use by another transaction for "
                    f"{_LOCK_TIMEOUT}; retry when no long transaction holds it "
                    "(pg_stat_activity)"
                ) from None
            if code == "42501":
                raise SequenceSyncError(
                    f"cannot lock sequence {name} against concurrent nextval() to move it "
                    "safely: run the sync as its owner"
                ) from None
            raise
        savepoint.commit()
        return


def _check_range(
    name: str,
    state: _State,
    current: int,
    wanted: int,
    source_next: int | None,
    extreme: int | None,
    headroom: int,
) -> None:
    low, high, what = state.bounds
    if low <= wanted <= high:
        return
    message = f"sequence {name} would have to move to {wanted}, outside {what} [{low}, {high}]"
    plain = synced_next(current, state.increment, source_next=source_next, extreme_key=extreme)
    if headroom and source_next is not None and low <= plain <= high:
        limit = high if state.increment > 0 else low
        fits = max(0, (limit - source_next) // state.increment)
        raise SequenceSyncError(
            f"{message}: a headroom of {headroom} does not fit. At most {fits} fits, which "
            f"leaves the target no values of its own; --headroom {fits // 2} gives both "
            "databases the same room. Or widen the column and the sequence to bigint "
            "first (alter table ... alter column ... type bigint; alter sequence ... as bigint)"
        )
    raise SequenceSyncError(
        f"{message}; widen it (alter sequence ... as bigint, and its column) and re-run"
    )


def _extreme_key(side: Side, owner: tuple[str, str, str] | None, ascending: bool) -> int | None:
    if owner is None:
        return None
    schema, table, column = owner
    function = "max" if ascending else "min"
    rows = side.query(
        f"select {function}({quote_ident(column)})::bigint "
        f"from {quote_ident(schema)}.{quote_ident(table)}"
    )
    value = rows[0][0]
    return None if value is None else int(value)
