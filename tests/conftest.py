"""Shared fixtures. The two real PostgreSQL servers come from dbroute's own pytest
plugin (``dbroute_servers``, ``dbroute_databases``), the same one users get."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dbroute import Router, RoutingSettings
from dbroute.testing import DatabasePair

MakeRouter = Callable[..., Router]


@pytest.fixture
def make_router(dbroute_databases: DatabasePair) -> Iterator[MakeRouter]:
    """Build routers on this test's fresh database pair; all are disposed afterwards."""
    routers: list[Router] = []

    def make(**overrides: Any) -> Router:
        settings = RoutingSettings(
            neon_url=dbroute_databases.neon_url, rds_url=dbroute_databases.rds_url, **overrides
        )
        router = Router(settings)
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.dispose()


@pytest.fixture
def router(make_router: MakeRouter) -> Router:
    """A router with the default settings (0 % on RDS) on a fresh database pair."""
    return make_router()
