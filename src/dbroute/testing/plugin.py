"""pytest plugin: two real PostgreSQL servers per test session.

Fixtures:

``dbroute_servers``
    session-scoped :class:`~dbroute.testing.ServerPair` (``.neon``, ``.rds``),
    started once per test session and stopped at its end.
``dbroute_databases``
    a fresh, empty database of the same name on both servers for one test
    (:class:`~dbroute.testing.DatabasePair` with ``neon_url`` and ``rds_url``),
    dropped afterwards.

Nothing starts unless a test asks for one of these fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbroute.testing.servers import (
    DatabasePair,
    ServerPair,
    create_database_pair,
    drop_database_pair,
    start_server_pair,
)


@pytest.fixture(scope="session")
def dbroute_servers() -> Iterator[ServerPair]:
    """The Neon and RDS stand-in servers for this test session."""
    with start_server_pair() as pair:
        yield pair


@pytest.fixture
def dbroute_databases(dbroute_servers: ServerPair) -> Iterator[DatabasePair]:
    """A fresh database on each server, dropped after the test."""
    databases = create_database_pair(dbroute_servers)
    try:
        yield databases
    finally:
        drop_database_pair(dbroute_servers, databases)
