"""Fixtures of the validation tests: engines on a fresh database pair."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from dbroute.testing import DatabasePair

from .validate_helpers import Pair


@pytest.fixture
def pair(dbroute_databases: DatabasePair) -> Iterator[Pair]:
    neon = create_engine(dbroute_databases.neon_url, pool_size=4, max_overflow=4)
    rds = create_engine(dbroute_databases.rds_url, pool_size=4, max_overflow=4)
    try:
        yield Pair(neon, rds, dbroute_databases)
    finally:
        neon.dispose()
        rds.dispose()
