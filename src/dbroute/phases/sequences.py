"""Whether a database's sequences are ahead of the keys they generate.

After ``pg_restore`` or while rows arrive by mirroring, a sequence can lag
behind the highest key already in its column; the first insert on that
database as primary then fails with a duplicate key. This compares each
owned sequence (``serial`` and identity columns) with ``max(column)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

__all__ = ["SequenceState", "lagging_sequences", "sequence_states"]

_OWNED = text(
    """
    select s.schemaname, s.sequencename, s.last_value, s.start_value, s.increment_by,
           tn.nspname as table_schema, t.relname as table_name, a.attname as column_name
    from pg_sequences s
    join pg_namespace sn on sn.nspname = s.schemaname
    join pg_class sc on sc.relnamespace = sn.oid and sc.relname = s.sequencename
    join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = sc.oid
         and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
    join pg_class t on t.oid = d.refobjid
    join pg_namespace tn on tn.oid = t.relnamespace
    join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
    where s.schemaname not in ('dbroute', 'pg_catalog', 'information_schema')
      and s.schemaname not like 'pg_toast%'
    order by 1, 2
    """
)


@dataclass(frozen=True, slots=True)
class SequenceState:
    """One sequence and the column it feeds."""

    sequence: str
    column: str
    next_value: int
    max_key: int | None
    increment: int

    @property
    def synced(self) -> bool:
        """Whether the next generated value cannot collide with an existing key."""
        if self.max_key is None:
            return True
        if self.increment < 0:
            # Descending sequences hand out ever smaller values.
            return self.next_value < self.max_key
        return self.next_value > self.max_key


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sequence_states(conn: Connection) -> list[SequenceState]:
    """Every owned sequence of user schemas with its column's extreme key."""
    states = []
    for row in conn.execute(_OWNED).all():
        table = f"{_quote(row.table_schema)}.{_quote(row.table_name)}"
        extreme = "min" if row.increment_by < 0 else "max"
        key = conn.execute(text(f"select {extreme}({_quote(row.column_name)}) from {table}"))
        max_key = key.scalar_one()
        # last_value is NULL until the first nextval(): the next value is then start_value.
        nxt = row.start_value if row.last_value is None else row.last_value + row.increment_by
        states.append(
            SequenceState(
                sequence=f"{row.schemaname}.{row.sequencename}",
                column=f"{row.table_schema}.{row.table_name}.{row.column_name}",
                next_value=int(nxt),
                max_key=None if max_key is None else int(max_key),
                increment=int(row.increment_by),
            )
        )
    return states


def lagging_sequences(conn: Connection) -> list[SequenceState]:
    """The sequences whose next value would collide with an existing key."""
    return [state for state in sequence_states(conn) if not state.synced]
