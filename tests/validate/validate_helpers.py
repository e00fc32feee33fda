"""Helpers of the validation tests: engines on a database pair, SQL on one or both sides."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from dbroute.testing import DatabasePair


@dataclass
class Pair:
    """Engines on this test's two databases, with helpers to run SQL on one or both."""

    neon: Engine
    rds: Engine
    urls: DatabasePair

    def both(self, sql: str) -> None:
        for engine in (self.neon, self.rds):
            self.run(engine, sql)

    @staticmethod
    def run(engine: Engine, sql: str) -> None:
        with engine.begin() as conn:
            conn.connection.driver_connection.execute(sql.encode())  # no %-placeholders

    def rows(self, engine: Engine, sql: str) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return list(conn.connection.driver_connection.execute(sql.encode()).fetchall())
