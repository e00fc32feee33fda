"""Shared fixtures. The two real PostgreSQL servers come from dbroute's own pytest
plugin (``dbroute_servers``, ``dbroute_databases``), the same one users get."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from dbroute import Router, RoutingSettings
from dbroute.testing import DatabasePair

MakeRouter = Callable[..., Router]

# Every property test, in every directory, is deterministic (a failure shows on each
# run, and only then) and has no deadline (the machine is shared; timing belongs in
# benchmarks/). A test's own @settings still overrides the other fields.
settings.register_profile("dbroute", derandomize=True, deadline=None)
settings.load_profile("dbroute")


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


# --- telemetry -----------------------------------------------------------------
# OpenTelemetry allows one global MeterProvider per process, so tests share this
# one; read values with the ``metric_value`` fixture and compare before/after deltas.

MetricValue = Callable[..., float]


@pytest.fixture(scope="session")
def metric_reader() -> Any:
    """An SDK in-memory reader installed as the global MeterProvider's (once per session)."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture
def metric_value(metric_reader: Any) -> MetricValue:
    """``metric_value(name, **attributes)``: the current total of a metric.

    Sums the data points of metric ``name`` whose attributes include
    ``attributes``: counters give their cumulative sum, histograms their count.
    """
    return lambda name, **attributes: _metric_total(metric_reader, name, attributes)


def _metric_total(reader: Any, name: str, attributes: dict[str, str]) -> float:
    data = reader.get_metrics_data()
    total = 0.0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attributes.items()):
                        total += getattr(point, "value", None) or getattr(point, "count", 0)
    return total
