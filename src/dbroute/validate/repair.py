"""Repair: make the target's differing rows equal to the authoritative source's.

For every key a data diff found different, the source's *current* row decides:
present there, it is upserted on the target; absent, the target's row is
deleted. Work goes in batches of ``batch_size`` keys, one transaction per
batch, and every repaired key is compared again afterwards.

Without ``apply=True`` nothing is written: the report says what would change.
Values travel as PostgreSQL text and are cast back to the column types, so
every type round-trips exactly. Generated columns are recomputed by the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from dbroute.errors import RepairError
from dbroute.target import Target
from dbroute.telemetry import VALIDATE_REPAIRED, validate_attributes
from dbroute.validate.catalog import Table, load_tables
from dbroute.validate.checksum import TableQuery
from dbroute.validate.connect import Database, engine_pair
from dbroute.validate.data import DataOptions, plan_tables
from dbroute.validate.keys import KeyValue, batches, quote_ident
from dbroute.validate.report import DataReport
from dbroute.validate.snapshot import Side, open_side

__all__ = ["RepairReport", "TableRepair", "repair"]


@dataclass
class TableRepair:
    """What repair did (or would do) to one table of the target."""

    schema: str
    table: str
    upserts: list[KeyValue] = field(default_factory=list)
    deletes: list[KeyValue] = field(default_factory=list)
    #: Keys still different after the repair (re-verified); empty on success.
    remaining: list[KeyValue] = field(default_factory=list)
    pending_skipped: int = 0

    @property
    def name(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"


@dataclass
class RepairReport:
    """The repair of every differing table, from ``source`` onto the other database."""

    source: Target
    applied: bool
    tables: list[TableRepair] = field(default_factory=list)

    @property
    def target(self) -> Target:
        """The database written to."""
        return self.source.other

    @property
    def upserts(self) -> int:
        """Rows written (or to be written) on the target."""
        return sum(len(t.upserts) for t in self.tables)

    @property
    def deletes(self) -> int:
        """Rows deleted (or to be deleted) on the target."""
        return sum(len(t.deletes) for t in self.tables)

    @property
    def verified(self) -> bool:
        """True when applied and every repaired key now matches."""
        return self.applied and not any(t.remaining for t in self.tables)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "source": self.source.value,
            "target": self.target.value,
            "applied": self.applied,
            "verified": self.verified,
            "tables": [
                {
                    "table": t.name,
                    "upserts": [list(k) for k in t.upserts],
                    "deletes": [list(k) for k in t.deletes],
                    "remaining": [list(k) for k in t.remaining],
                    "pending_skipped": t.pending_skipped,
                }
                for t in self.tables
            ],
        }


def repair(
    neon: Database,
    rds: Database,
    report: DataReport,
    source: Target,
    *,
    apply: bool = False,
    include_pending: bool = False,
    batch_size: int = 500,
) -> RepairReport:
    """Copy ``source``'s rows over the differing rows of the other database.

    ``include_pending`` also repairs keys waiting in a dual-write journal
    (normally replay resolves those). Raises :class:`~dbroute.errors.RepairError`
    when applied keys still differ afterwards.
    """
    source = Target(source)
    result = RepairReport(source, apply)
    with engine_pair(neon, rds, connections=1) as (ours, theirs):
        engines = {Target.NEON: ours, Target.RDS: theirs}
        todo = [t for t in report.tables if t.differing_keys() or (include_pending and t.pending)]
        if not todo:
            return result
        options = DataOptions(tables=[t.name for t in todo])
        queries = {(p.schema, p.table): p.query for p in plan_tables(ours, theirs, options)}
        with engines[source.other].connect() as conn:
            targets = load_tables(conn)
        for diff in todo:
            query = queries.get((diff.schema, diff.table))
            if query is None:
                raise RepairError(f"{diff.name} can no longer be compared by key; re-run validate")
            keys = diff.differing_keys() + (diff.pending if include_pending else [])
            table = _repair_table(
                engines, source, targets[diff.schema, diff.table], query, keys, apply, batch_size
            )
            table.pending_skipped = 0 if include_pending else len(diff.pending)
            result.tables.append(table)
    failed = [t.name for t in result.tables if t.remaining]
    if failed:
        raise RepairError(
            f"rows still differ after repair in {', '.join(failed)}: they are changing under "
            "write traffic, or a trigger on the target rewrites them; re-run validate"
        )
    return result


def _repair_table(
    engines: dict[Target, Engine],
    source: Target,
    table: Table,
    query: TableQuery,
    keys: Sequence[KeyValue],
    apply: bool,
    batch_size: int,
) -> TableRepair:
    result = TableRepair(table.schema, table.name)
    writable = [c for c in query.columns if not table.column(c).generated]
    for batch in batches(keys, batch_size):
        with open_side(engines[source], source) as reader:
            rows = query.texts_of(reader, batch, writable)
        upserts = [k for k in batch if k in rows]
        deletes = [k for k in batch if k not in rows]
        result.upserts.extend(upserts)
        result.deletes.extend(deletes)
        if not apply:
            continue
        with open_side(engines[source.other], source.other, read_only=False) as writer:
            writer.conn.exec_driver_sql("set constraints all deferred")
            _upsert(writer, table, query, writable, [rows[k] for k in upserts])
            _delete(writer, query, deletes)
        VALIDATE_REPAIRED.add(len(batch), validate_attributes(result.name))
    if apply:
        result.remaining = _still_different(engines, query, keys)
    return result


def _upsert(
    side: Side,
    table: Table,
    query: TableQuery,
    columns: Sequence[str],
    rows: Sequence[tuple[str | None, ...]],
) -> None:
    if not rows:
        return
    names = [f"c{i}" for i in range(len(columns))]
    casts = ", ".join(f"v.{n}::{table.column(c).type}" for n, c in zip(names, columns, strict=True))
    arrays = ", ".join("%s::text[]" for _ in columns)
    target = ", ".join(quote_ident(c) for c in columns)
    key = ", ".join(quote_ident(c) for c in query.key.columns)
    updates = [
        f"{quote_ident(c)} = excluded.{quote_ident(c)}"
        for c in columns
        if c not in query.key.columns
    ]
    action = f"update set {', '.join(updates)}" if updates else "nothing"
    # overriding system value: identity columns GENERATED ALWAYS take the source's value.
    sql = (
        f"insert into {query.qualified} ({target}) overriding system value "
        f"select {casts} from unnest({arrays}) as v({', '.join(names)}) "
        f"on conflict ({key}) do {action}"
    )
    side.query(sql + " returning 1", [[row[i] for row in rows] for i in range(len(columns))])


def _delete(side: Side, query: TableQuery, keys: Sequence[KeyValue]) -> None:
    if not keys:
        return
    names = [f"k{i}" for i in range(len(query.key.columns))]
    arrays = ", ".join("%s::text[]" for _ in names)
    sql = (
        f"delete from {query.qualified} t using unnest({arrays}) as k({', '.join(names)}) "
        f"where {query.key.match('t', 'k')} returning 1"
    )
    side.query(sql, [[key[i] for key in keys] for i in range(len(names))])


def _still_different(
    engines: dict[Target, Engine], query: TableQuery, keys: Sequence[KeyValue]
) -> list[KeyValue]:
    remaining: list[KeyValue] = []
    for batch in batches(keys):
        with open_side(engines[Target.NEON], Target.NEON) as neon:
            ours = query.hashes_of(neon, batch)
        with open_side(engines[Target.RDS], Target.RDS) as rds:
            theirs = query.hashes_of(rds, batch)
        remaining.extend(k for k in batch if ours.get(k) != theirs.get(k))
    return remaining
