"""Each database's health: reachable, how fast, which version, writable, connections left."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from dbroute.target import Target

__all__ = ["Health", "admin_engine", "check_health", "describe_error"]

#: Above this share of max_connections a database counts as unhealthy: a
#: phase change moves traffic and must not push a server into refusing connections.
MAX_CONNECTION_SHARE = 0.9

_PROBE = text(
    """
    select current_setting('server_version') as version,
           pg_is_in_recovery() as in_recovery,
           current_setting('default_transaction_read_only') = 'on' as read_only,
           (select count(*) from pg_stat_activity where backend_type = 'client backend')
               as connections,
           current_setting('max_connections')::int as max_connections
    """
)


@dataclass(frozen=True, slots=True)
class Health:
    """What :func:`check_health` found on one database."""

    target: Target
    reachable: bool
    error: str | None = None
    connect_ms: float | None = None
    server_version: str | None = None
    read_only: bool | None = None
    connections: int | None = None
    max_connections: int | None = None

    @property
    def ok(self) -> bool:
        """Reachable, writable and below :data:`MAX_CONNECTION_SHARE` of its connections."""
        return self.reachable and not self.read_only and not self.crowded

    @property
    def crowded(self) -> bool:
        """Whether connections exceed :data:`MAX_CONNECTION_SHARE` of ``max_connections``."""
        if self.connections is None or not self.max_connections:
            return False
        return self.connections > MAX_CONNECTION_SHARE * self.max_connections

    def problem(self) -> str | None:
        """Why this database is not healthy, or ``None``."""
        if not self.reachable:
            return f"{self.target.value} is unreachable: {self.error}"
        if self.read_only:
            return f"{self.target.value} is read-only (a replica, or default_transaction_read_only)"
        if self.crowded:
            return (
                f"{self.target.value} uses {self.connections} of {self.max_connections} "
                "connections; free some (PgBouncer/RDS Proxy) before moving traffic"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "target": self.target.value, "ok": self.ok}


def admin_engine(url: URL, connect_timeout: int = 5) -> Engine:
    """An engine without a pool for one-off admin connections (status, checks, assess)."""
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": connect_timeout})


def check_health(target: Target, engine: Engine) -> Health:
    """Open a fresh connection to ``engine`` (timed) and probe the server."""
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            connect_ms = (time.perf_counter() - started) * 1000
            row = conn.execute(_PROBE).one()
    except SQLAlchemyError as exc:
        return Health(target, reachable=False, error=describe_error(exc))
    return Health(
        target,
        reachable=True,
        connect_ms=round(connect_ms, 2),
        server_version=row.version,
        read_only=bool(row.in_recovery or row.read_only),
        connections=int(row.connections),
        max_connections=int(row.max_connections),
    )


def describe_error(exc: BaseException) -> str:
    """The first line of the driver's message: names host and port, never the password."""
    original = getattr(exc, "orig", None) or exc
    message = str(original).strip()
    return message.splitlines()[0] if message else type(exc).__name__
