"""Accept engines, URLs or a Router wherever validation needs the two databases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL

from dbroute.errors import ConfigurationError
from dbroute.settings import normalize_url
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.router import Router

__all__ = ["Database", "engine_pair", "engines_of"]

#: A database as validation accepts it: an engine, or a URL (string or SQLAlchemy URL).
Database = Engine | URL | str


def engines_of(router: Router) -> tuple[Engine, Engine]:
    """The sync engines of a router's two databases (Neon, RDS)."""
    return router.engine(Target.NEON), router.engine(Target.RDS)


@contextlib.contextmanager
def engine_pair(
    neon: Database, rds: Database, connections: int = 4
) -> Iterator[tuple[Engine, Engine]]:
    """Engines for ``neon`` and ``rds``; those created here (from URLs) are disposed on exit.

    ``connections`` bounds the pool of an engine created here.
    """
    created: list[Engine] = []

    def make(database: Database) -> Engine:
        if isinstance(database, Engine):
            return database
        raw = database if isinstance(database, str) else database.render_as_string(False)
        try:
            url = normalize_url(raw)
        except ValueError as exc:
            raise ConfigurationError(f"database URL {exc}") from None
        options: dict[str, Any] = {
            "pool_size": connections,
            "max_overflow": 0,
            "pool_pre_ping": True,
        }
        engine = create_engine(url, **options)
        created.append(engine)
        return engine

    try:
        yield make(neon), make(rds)
    finally:
        for engine in created:
            engine.dispose()
