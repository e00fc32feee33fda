"""Whether a database's sequences leave room for the keys they will generate.

After ``pg_restore`` or while rows arrive by mirroring, a sequence can lag
behind keys already in its column; the first insert on that database as
primary then fails with a duplicate key. During a ramp both databases
generate keys while the mirror copies rows (not sequence positions), so two
sequences at the same position hand out the same ids.

The rule: a sequence's **window** is the closed range holding the next
``size`` values ``nextval()`` will return. A database may be primary when
each owned sequence's window holds no existing key (on this database, and on
the other one when the phase mirrors: its keys arrive here); when both
databases are primaries, also the two windows of the same sequence must be
disjoint. :func:`next_window` and :meth:`Window.overlaps` are the pure part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, text

from dbroute.sql import ident, sequences_sql, user_schema
from dbroute.target import Target

__all__ = [
    "DEFAULT_WINDOW",
    "SUGGESTED_HEADROOM",
    "Blocker",
    "OwnedSequence",
    "Window",
    "blocked_sequences",
    "first_key_in",
    "next_window",
    "owned_sequences",
]

#: How many generated values ahead each sequence must find free. A million
#: ids is a day of a table taking ~10 inserts/s: the check refuses (and the
#: status shows) a side approaching the other's range long before it gets
#: there, yet it is 1/1000 of the bigint headroom the runbook suggests and
#: fits many times in an ``integer`` column. Its cost does not depend on it
#: (one indexed range query per sequence, ``limit 1``).
DEFAULT_WINDOW = 1_000_000

#: The ``--headroom`` the advice suggests when both databases are primaries
#: (bigint keys; docs/runbook.md for ``integer`` columns).
SUGGESTED_HEADROOM = 1_000_000_000

# Sequences no column owns feed no key: nothing to check.
_OWNED = text(sequences_sql(f"{user_schema('s.schemaname')} and a.attname is not null"))


@dataclass(frozen=True, slots=True)
class Window:
    """A closed range of values, ``low <= high``."""

    low: int
    high: int

    def overlaps(self, other: Window) -> bool:
        """Whether the two ranges share a value."""
        return self.low <= other.high and other.low <= self.high

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low}, {self.high}]"


def next_window(
    next_value: int, increment: int, size: int, min_value: int, max_value: int
) -> Window | None:
    """The range of the next ``size`` values a sequence returns, or ``None`` when it has none.

    Ascending: ``[next, next + (size - 1) * increment]``; descending mirrored.
    It ends at the last value inside ``[min_value, max_value]`` (``nextval()`` fails
    beyond it rather than wrapping; cycling sequences are not modelled).
    """
    if size < 1 or not min_value <= next_value <= max_value:
        return None
    # How many more steps fit before the sequence's end, at most size - 1.
    room = (
        (max_value - next_value) // increment
        if increment > 0
        else ((next_value - min_value) // -increment)
    )
    last = next_value + min(size - 1, room) * increment
    return Window(min(next_value, last), max(next_value, last))


@dataclass(frozen=True, slots=True)
class OwnedSequence:
    """A sequence feeding a column (``serial``, identity, or ``OWNED BY``) and its position."""

    sequence: str
    table_schema: str
    table_name: str
    column_name: str
    next_value: int
    increment: int
    min_value: int
    max_value: int

    @property
    def column(self) -> str:
        """``schema.table.column``."""
        return f"{self.table_schema}.{self.table_name}.{self.column_name}"

    @property
    def table(self) -> str:
        """The quoted table name."""
        return f"{ident(self.table_schema)}.{ident(self.table_name)}"

    def window(self, size: int) -> Window | None:
        """The range of this sequence's next ``size`` values (see :func:`next_window`)."""
        return next_window(self.next_value, self.increment, size, self.min_value, self.max_value)


def owned_sequences(conn: Connection) -> list[OwnedSequence]:
    """Every sequence of the user schemas that feeds a column, with its next value."""
    found = []
    for row in conn.execute(_OWNED).all():
        schema, name = row.schemaname, row.sequencename
        # pg_sequences.last_value is NULL after setval(..., false) (what the sync
        # leaves) as well as before the first nextval(): read the sequence itself.
        last, called = conn.execute(
            text(f"select last_value, is_called from {ident(schema)}.{ident(name)}")
        ).one()
        found.append(
            OwnedSequence(
                sequence=f"{schema}.{name}",
                table_schema=row.table_schema,
                table_name=row.table_name,
                column_name=row.column_name,
                next_value=int(last + row.increment_by if called else last),
                increment=int(row.increment_by),
                min_value=int(row.min_value),
                max_value=int(row.max_value),
            )
        )
    return found


def first_key_in(conn: Connection, seq: OwnedSequence, window: Window) -> int | None:
    """The key of ``seq``'s column in ``window`` nearest to its next value, if any.

    One range query, served by the column's index (the primary key).
    """
    column = ident(seq.column_name)
    order = "asc" if seq.increment > 0 else "desc"
    key = conn.execute(
        text(
            f"select {column}::bigint from {seq.table} "
            f"where {column} between cast(:low as bigint) and cast(:high as bigint) "
            f"order by {column} {order} limit 1"
        ),
        {"low": window.low, "high": window.high},
    ).scalar()
    return None if key is None else int(key)


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why a sequence's next values are not free: what is in the way, and where."""

    sequence: str
    detail: str
    #: The key in the way is on the other database only: replay brings it here first.
    needs_replay: bool = False


def blocked_sequences(
    conns: Mapping[Target, Connection], target: Target, size: int, *, overlap: bool
) -> list[Blocker]:
    """The sequences of ``target`` whose next ``size`` values are not free.

    A window is not free when it holds a key of its column on ``target`` or,
    when ``conns`` has the other database (the phase mirrors), on that one.
    With ``overlap`` (both databases primaries), also when it overlaps the
    other database's window of the same sequence.
    """
    other = conns.get(target.other)
    theirs = {s.sequence: s for s in owned_sequences(other)} if other is not None else {}
    found = (
        _blocker(conns, target, seq, theirs.get(seq.sequence), size, overlap)
        for seq in owned_sequences(conns[target])
    )
    return [blocker for blocker in found if blocker is not None]


def _blocker(
    conns: Mapping[Target, Connection],
    target: Target,
    seq: OwnedSequence,
    mirror: OwnedSequence | None,
    size: int,
    overlap: bool,
) -> Blocker | None:
    window = seq.window(size)
    if window is None:  # exhausted: nextval() fails, it cannot collide
        return None
    where = f"{seq.sequence} (next {seq.next_value}):"
    within = f"is within its next {size} values {window}"
    key = first_key_in(conns[target], seq, window)
    if key is not None:
        return Blocker(seq.sequence, f"{where} key {key} of {seq.column} {within}")
    other = conns.get(target.other)
    if other is None or mirror is None or mirror.column != seq.column:
        return None
    key = first_key_in(other, seq, window)
    if key is not None:
        return Blocker(
            seq.sequence,
            f"{where} key {key} of {seq.column} on {target.other.value} (not here yet) {within}",
            needs_replay=True,
        )
    their_window = mirror.window(size)
    if overlap and their_window is not None and window.overlaps(their_window):
        return Blocker(
            seq.sequence,
            f"{where} its next {size} values {window} overlap "
            f"{target.other.value}'s next {size} {their_window}",
        )
    return None
