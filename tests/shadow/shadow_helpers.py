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
