"""Validation runs recorded in ``dbroute.validation_runs`` on both databases.

Phase changes read :func:`last_validation` as a precondition ("the data was
proven equal recently"), so a run is stored on both databases: either one can
answer after the other is gone.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from dbroute.validate.connect import Database, engine_pair
from dbroute.validate.report import ValidationReport

__all__ = ["TABLE", "ValidationRecord", "last_validation", "record_run"]

TABLE = "dbroute.validation_runs"

_DDL = f"""
create schema if not exists dbroute;
create table if not exists {TABLE} (
    id          bigint generated always as identity primary key,
    started_at  timestamptz not null,
    finished_at timestamptz not null,
    clean       boolean     not null,
    summary     jsonb       not null,
    who         text        not null
)
"""


@dataclass(frozen=True)
class ValidationRecord:
    """One recorded validation run."""

    started_at: datetime
    finished_at: datetime
    clean: bool
    summary: dict[str, Any]
    who: str


def default_who() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record_run(
    neon: Database, rds: Database, report: ValidationReport, who: str | None = None
) -> ValidationRecord:
    """Store ``report``'s summary on both databases (creating the table if needed)."""
    record = ValidationRecord(
        report.started_at, report.finished_at, report.clean, report.summary(), who or default_who()
    )
    with engine_pair(neon, rds, connections=1) as engines:
        for engine in engines:
            _insert(engine, record)
    return record


def _insert(engine: Engine, record: ValidationRecord) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(_DDL)
        conn.execute(
            text(
                f"insert into {TABLE} (started_at, finished_at, clean, summary, who) "
                "values (:started, :finished, :clean, cast(:summary as jsonb), :who)"
            ),
            {
                "started": record.started_at,
                "finished": record.finished_at,
                "clean": record.clean,
                "summary": json.dumps(record.summary),
                "who": record.who,
            },
        )


def last_validation(engine: Engine) -> ValidationRecord | None:
    """The most recent run recorded in ``engine``'s database, or None (never recorded)."""
    with engine.connect() as conn:
        if conn.execute(text("select to_regclass(:t)"), {"t": TABLE}).scalar() is None:
            return None
        row = conn.execute(
            text(
                f"select started_at, finished_at, clean, summary, who from {TABLE} "
                "order by finished_at desc, id desc limit 1"
            )
        ).first()
    if row is None:
        return None
    return ValidationRecord(row.started_at, row.finished_at, row.clean, dict(row.summary), row.who)
