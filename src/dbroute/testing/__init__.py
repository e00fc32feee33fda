"""Real PostgreSQL servers for testing an application that uses dbroute.

Installing dbroute registers a pytest plugin (:mod:`dbroute.testing.plugin`)
with session-scoped fixtures; see ``docs/testing.md``.
"""

from dbroute.testing.servers import (
    DatabasePair,
    PostgresServer,
    ServerPair,
    ServerUnavailableError,
    create_database_pair,
    drop_database_pair,
    libpq_url,
    start_server_pair,
)

__all__ = [
    "DatabasePair",
    "PostgresServer",
    "ServerPair",
    "ServerUnavailableError",
    "create_database_pair",
    "drop_database_pair",
    "libpq_url",
    "start_server_pair",
]
