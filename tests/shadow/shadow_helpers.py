"""Helpers of the shadow-read tests: the ``items`` table and direct writes to one database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from dbroute import Router, Target

SCHEMA = """
create table items (
    id      int primary key,
    name    text not null,
    price   numeric(10, 2) not null,
    score   float8,
    seen_at timestamptz not null default '2024-01-01 00:00:00+00'
)
"""


def seed(router: Router, rows: int = 20, target: Target | None = None) -> None:
    """Create ``items`` with the same ``rows`` rows on both databases (or one)."""
    for database in [target] if target else list(Target):
        with router.engine(database).begin() as conn:
            conn.execute(text(SCHEMA))
            conn.execute(
                text(
                    "insert into items (id, name, price, score) "
                    "select g, 'item-' || g, g * 1.25, g / 3.0 from generate_series(1, :n) g"
                ),
                {"n": rows},
            )


def on(router: Router, target: Target, sql: str, **params: Any) -> None:
    """Run ``sql`` on one database directly (planting differences)."""
    with router.engine(target).begin() as conn:
        conn.execute(text(sql), params)


def worker_pids() -> list[int]:
    """The shadow worker processes started by this process (Linux ``/proc``)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:  # ended meanwhile
            continue
        if parent == os.getpid() and b"dbroute.shadow.worker" in command:
            found.append(int(entry))
    return found
