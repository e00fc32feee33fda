"""Every OpenTelemetry instrument and attribute name dbroute uses, in one place.

dbroute depends on ``opentelemetry-api`` only. Without an SDK the instruments
are no-ops costing a function call; once the application installs a
``MeterProvider``/``TracerProvider`` they report through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry import metrics, trace

from dbroute.target import Reason, Target

__all__ = [
    "ATTR_REASON",
    "ATTR_TARGET",
    "METER",
    "ROUTING_DECISIONS",
    "TRACER",
    "decision_attributes",
    "target_attributes",
]

_SCOPE = "dbroute"

METER = metrics.get_meter(_SCOPE)
TRACER = trace.get_tracer(_SCOPE)

ATTR_TARGET = "dbroute.target"
ATTR_REASON = "dbroute.reason"

ROUTING_DECISIONS = METER.create_counter(
    "dbroute.routing.decisions",
    unit="{decision}",
    description="Routing decisions, by target database and reason",
)

# Attribute sets are built once: the routing hot path must not allocate them.
_DECISION_ATTRIBUTES: dict[tuple[Target, Reason], Mapping[str, str]] = {
    (target, reason): MappingProxyType({ATTR_TARGET: target.value, ATTR_REASON: reason.value})
    for target in Target
    for reason in Reason
}
_TARGET_ATTRIBUTES: dict[Target, Mapping[str, str]] = {
    target: MappingProxyType({ATTR_TARGET: target.value}) for target in Target
}


def decision_attributes(target: Target, reason: Reason) -> Mapping[str, str]:
    """The (shared, read-only) attributes of a routing decision."""
    return _DECISION_ATTRIBUTES[target, reason]


def target_attributes(target: Target) -> Mapping[str, str]:
    """The (shared, read-only) attributes naming a target database."""
    return _TARGET_ATTRIBUTES[target]
