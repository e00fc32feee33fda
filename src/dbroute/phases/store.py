"""The phase table on both databases: the migration phase every app process follows.

``dbroute.phase`` holds one row (phase, RDS percentage, version, who/when/why)
and ``dbroute.phase_history`` one row per change with the preconditions that
were checked. Both databases carry both tables, so the phase survives either
being down; readers take the row with the highest version, and writers
compare-and-set on the version so two operators cannot both win.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dbroute.errors import PhaseStoreError
from dbroute.phases.health import describe_error
from dbroute.phases.model import Phase, Transition
from dbroute.target import Target

__all__ = [
    "INITIAL",
    "HistoryEntry",
    "StoreReading",
    "StoredPhase",
    "ensure_store",
    "read_current",
    "read_history",
    "read_phase",
    "write_phase",
]

log = logging.getLogger("dbroute.phases")

_DDL = (
    "create schema if not exists dbroute",
    """
    create table if not exists dbroute.phase (
        singleton   boolean primary key default true check (singleton),
        phase       text not null,
        rds_percent numeric(5, 2) not null,
        version     bigint not null,
        changed_at  timestamptz not null default now(),
        changed_by  text not null,
        reason      text not null
    )
    """,
    """
    create table if not exists dbroute.phase_history (
        id           bigserial primary key,
        version      bigint not null,
        from_phase   text not null,
        from_percent numeric(5, 2) not null,
        to_phase     text not null,
        to_percent   numeric(5, 2) not null,
        changed_at   timestamptz not null default now(),
        changed_by   text not null,
        reason       text not null,
        checks       jsonb not null
    )
    """,
    """
    insert into dbroute.phase (phase, rds_percent, version, changed_by, reason)
    values ('neon_only', 0, 0, 'dbroute', 'initial state')
    on conflict do nothing
    """,
)


@dataclass(frozen=True, slots=True)
class StoredPhase:
    """The phase row of one database."""

    phase: Phase
    rds_percent: Decimal
    version: int
    changed_at: datetime | None = None
    changed_by: str = ""
    reason: str = ""


#: What a database without the phase table means: the migration has not started.
INITIAL = StoredPhase(Phase.NEON_ONLY, Decimal(0), 0, None, "dbroute", "no phase table yet")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One audited phase change."""

    version: int
    from_phase: Phase
    from_percent: Decimal
    to_phase: Phase
    to_percent: Decimal
    changed_at: datetime
    changed_by: str
    reason: str
    checks: list[dict[str, Any]]


@dataclass(frozen=True)
class StoreReading:
    """The phase as read from both databases: the newest row wins."""

    current: StoredPhase
    #: Per database: its row, ``None`` without a phase table, or the error text.
    rows: Mapping[Target, StoredPhase | str | None] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        """Whether both databases hold the same version."""
        versions = {r.version if isinstance(r, StoredPhase) else r for r in self.rows.values()}
        return len(versions) == 1 and None not in versions

    def lagging(self) -> list[Target]:
        """Reachable databases whose row is older than :attr:`current` (or missing)."""
        return [
            t
            for t, row in self.rows.items()
            if row is None or (isinstance(row, StoredPhase) and row.version < self.current.version)
        ]


def _table_exists(conn: Connection) -> bool:
    found = conn.execute(text("select to_regclass('dbroute.phase') is not null")).scalar_one()
    return bool(found)


#: The columns of a phase row, in :class:`StoredPhase` order.
_COLUMNS = "phase, rds_percent, version, changed_at, changed_by, reason"


def _stored(row: Sequence[Any]) -> StoredPhase:
    """A row of :data:`_COLUMNS`."""
    return StoredPhase(Phase(row[0]), Decimal(row[1]), int(row[2]), row[3], row[4], row[5])


def read_phase(conn: Connection) -> StoredPhase | None:
    """The phase row on ``conn``'s database, or ``None`` when there is no phase table."""
    if not _table_exists(conn):
        return None
    row = conn.execute(text(f"select {_COLUMNS} from dbroute.phase")).one_or_none()
    return None if row is None else _stored(row)


def read_current(engines: Mapping[Target, Engine]) -> StoreReading:
    """Read the phase row from each database; the highest version is current.

    A database that cannot be reached is skipped (its error kept in
    ``rows``); raises :class:`PhaseStoreError` when neither can be read.
    """
    rows: dict[Target, StoredPhase | str | None] = {}
    for target, engine in engines.items():
        try:
            with engine.connect() as conn:
                rows[target] = read_phase(conn)
        except SQLAlchemyError as exc:
            rows[target] = describe_error(exc)
    found = [row for row in rows.values() if isinstance(row, StoredPhase)]
    if not found and all(isinstance(row, str) for row in rows.values()):
        raise PhaseStoreError(
            "cannot read the migration phase from either database: "
            + "; ".join(f"{t.value}: {row}" for t, row in rows.items())
        )
    current = max(found, key=lambda row: row.version) if found else INITIAL
    return StoreReading(current, rows)


def ensure_store(engine: Engine) -> None:
    """Create the schema, the phase table (at ``neon_only``) and the history; idempotent."""
    with engine.begin() as conn:
        # Serialise concurrent first runs: "create ... if not exists" races on the catalog.
        conn.execute(text("select pg_advisory_xact_lock(hashtext('dbroute.phase'))"))
        for statement in _DDL:
            conn.execute(text(statement))


def write_phase(
    engines: Mapping[Target, Engine],
    transition: Transition,
    *,
    expected_version: int,
    changed_by: str,
    reason: str,
    checks: Sequence[Mapping[str, Any]],
) -> tuple[StoredPhase, dict[Target, str]]:
    """Record ``transition`` on every database in ``engines``; return the new row and failures.

    The phase row is locked (``FOR UPDATE``) on every reachable database
    first, and only when none holds a version newer than ``expected_version``
    is anything written: a newer version means another operator changed the
    phase meanwhile, and raises :class:`PhaseStoreError` with nothing written
    anywhere, even when the newer version sits on the second database only.
    (Locks are taken in ``engines`` order, Neon then RDS, by every writer, so
    two operators cannot deadlock.) A lagging copy is brought forward. The
    first database committed makes the change effective (readers take the
    newest row); failures on the others are returned for the caller to report
    (``dbroute status`` shows the lag and the next change repairs it).
    """
    version = expected_version + 1
    failures: dict[Target, str] = {}
    written: StoredPhase | None = None
    with contextlib.ExitStack() as stack:
        locked: dict[Target, tuple[Connection, Any]] = {}
        for target, engine in engines.items():
            try:
                ensure_store(engine)
                conn = stack.enter_context(engine.connect())  # closing rolls back
                transaction = conn.begin()
                current = conn.execute(
                    text("select version from dbroute.phase for update")
                ).scalar_one()
            except SQLAlchemyError as exc:
                failures[target] = describe_error(exc)
                continue
            if current > expected_version:
                raise PhaseStoreError(
                    f"the phase changed meanwhile on {target.value} (version {current}, "
                    f"expected {expected_version}): run `dbroute status` and retry"
                )
            locked[target] = (conn, transaction)
        for target, (conn, transaction) in locked.items():
            try:
                row = _update(conn, transition, version, changed_by, reason)
                _audit(conn, transition, version, changed_by, reason, checks)
                transaction.commit()
            except SQLAlchemyError as exc:
                failures[target] = describe_error(exc)
                continue
            written = row
            log.info("phase %s recorded on %s (version %d)", transition, target.value, version)
    if written is None:
        raise PhaseStoreError(
            "the phase change was recorded on no database: "
            + "; ".join(f"{t.value}: {e}" for t, e in failures.items())
        )
    return written, failures


def _update(
    conn: Connection, transition: Transition, version: int, changed_by: str, reason: str
) -> StoredPhase:
    row = conn.execute(
        text(
            "update dbroute.phase set phase = :phase, rds_percent = :percent, version = :version, "
            f"changed_at = now(), changed_by = :by, reason = :reason returning {_COLUMNS}"
        ),
        {
            "phase": transition.target.value,
            "percent": transition.target_percent,
            "version": version,
            "by": changed_by,
            "reason": reason,
        },
    ).one()
    return _stored(row)


def _audit(
    conn: Connection,
    transition: Transition,
    version: int,
    changed_by: str,
    reason: str,
    checks: Sequence[Mapping[str, Any]],
) -> None:
    conn.execute(
        text(
            "insert into dbroute.phase_history (version, from_phase, from_percent, to_phase, "
            "to_percent, changed_by, reason, checks) values (:version, :from_phase, "
            ":from_percent, :to_phase, :to_percent, :by, :reason, cast(:checks as jsonb))"
        ),
        {
            "version": version,
            "from_phase": transition.source.value,
            "from_percent": transition.source_percent,
            "to_phase": transition.target.value,
            "to_percent": transition.target_percent,
            "by": changed_by,
            "reason": reason,
            "checks": json.dumps(list(checks), default=str),
        },
    )


def read_history(conn: Connection, limit: int = 20) -> list[HistoryEntry]:
    """The last ``limit`` phase changes on ``conn``'s database, newest first."""
    if not _table_exists(conn):
        return []
    rows = conn.execute(
        text(
            "select version, from_phase, from_percent, to_phase, to_percent, changed_at, "
            "changed_by, reason, checks from dbroute.phase_history "
            "order by version desc, id desc limit :limit"
        ),
        {"limit": limit},
    ).all()
    return [
        HistoryEntry(
            int(r[0]),
            Phase(r[1]),
            Decimal(r[2]),
            Phase(r[3]),
            Decimal(r[4]),
            r[5],
            r[6],
            r[7],
            r[8],
        )
        for r in rows
    ]
