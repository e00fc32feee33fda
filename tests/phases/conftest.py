"""Fixtures of the phase tests: a PhaseControl on the test's database pair."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest

from dbroute import RoutingSettings
from dbroute.phases.control import PhaseControl
from dbroute.testing import DatabasePair


@pytest.fixture
def settings(dbroute_databases: DatabasePair) -> RoutingSettings:
    return RoutingSettings(neon_url=dbroute_databases.neon_url, rds_url=dbroute_databases.rds_url)


@pytest.fixture
def control(settings: RoutingSettings) -> Iterator[PhaseControl]:
    with closing(PhaseControl(settings)) as phase_control:
        yield phase_control
