"""Sequence resync: the step runbooks forget after ``pg_restore``.

Rows copied with their keys do not advance the target's sequences, and the
first insert there fails with a duplicate key. For every sequence of the
target (``serial``, identity and free-standing ones) the next value becomes at
least both the source sequence's next value and one step past the largest
key in the column it feeds. Sequences already far enough are left alone, so
running it twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, text

from dbroute.errors import RepairError
from dbroute.target import Target
from dbroute.validate.catalog import schema_filter
from dbroute.validate.connect import Database, engine_pair
from dbroute.validate.keys import quote_ident
from dbroute.validate.snapshot import Side, open_side

__all__ = ["SequenceChange", "sync_sequences"]

_SEQUENCES = """
select s.schemaname, s.sequencename, s.last_value, s.start_value, s.increment_by,
       s.min_value, s.max_value, tn.nspname, t.relname, a.attname
from pg_sequences s
join pg_namespace sn on sn.nspname = s.schemaname
join pg_class sc on sc.relnamespace = sn.oid and sc.relname = s.sequencename
left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = sc.oid
     and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
left join pg_class t on t.oid = d.refobjid
left join pg_namespace tn on tn.oid = t.relnamespace
left join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
where {filter}
order by 1, 2
"""


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


def sync_sequences(
    neon: Database,
    rds: Database,
    source: Target,
    *,
    dry_run: bool = False,
    schemas: Sequence[str] | None = None,
) -> list[SequenceChange]:
    """Move every sequence of ``source.other`` to at least the source's and the keys' position.

    Returns one entry per target sequence (``changed`` tells which moved). With
    ``dry_run`` nothing is written. Idempotent.
    """
    source = Target(source)
    with engine_pair(neon, rds, connections=1) as (ours, theirs):
        engines: dict[Target, Engine] = {Target.NEON: ours, Target.RDS: theirs}
        with open_side(engines[source], source) as reader:
            source_next = {
                name: state.next_value for name, state in _sequences(reader, schemas).items()
            }
        with open_side(engines[source.other], source.other, read_only=dry_run) as writer:
            changes = [
                _sync_one(writer, name, row, source_next.get(name), dry_run)
                for name, row in _sequences(writer, schemas).items()
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

    @property
    def column(self) -> str | None:
        return None if self.owner is None else ".".join(self.owner)


def _sequences(side: Side, schemas: Sequence[str] | None) -> dict[str, _State]:
    """Every user sequence by ``schema.sequence``."""
    where, params = schema_filter("s.schemaname", schemas)
    found = {}
    for row in side.conn.execute(text(_SEQUENCES.format(filter=where)), params).all():
        schema, name, _, _, increment, low, high, tschema, table, column = row
        regclass = f"{quote_ident(schema)}.{quote_ident(name)}"
        # pg_sequences shows NULL after setval(..., false): read the sequence itself.
        last, called = side.query(f"select last_value, is_called from {regclass}")[0]
        found[f"{schema}.{name}"] = _State(
            regclass,
            int(last + increment if called else last),
            int(increment),
            int(low),
            int(high),
            None if column is None else (tschema, table, column),
        )
    return found


def _sync_one(
    side: Side, name: str, state: _State, source_next: int | None, dry_run: bool
) -> SequenceChange:
    ascending = state.increment > 0
    best = max if ascending else min
    wanted = state.next_value
    if source_next is not None:
        wanted = best(wanted, source_next)
    extreme = _extreme_key(side, state.owner, ascending)
    if extreme is not None:
        wanted = best(wanted, extreme + state.increment)
    if not state.low <= wanted <= state.high:
        raise RepairError(
            f"sequence {name} would have to move to {wanted}, outside its range "
            f"[{state.low}, {state.high}]; widen it (alter sequence ... as bigint) and re-run"
        )
    if wanted != state.next_value and not dry_run:
        # is_called = false: the next nextval() returns exactly ``wanted``.
        side.query("select setval(%s::regclass, %s, false)", [state.regclass, wanted])
    return SequenceChange(name, state.column, state.next_value, wanted, source_next, extreme)


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
