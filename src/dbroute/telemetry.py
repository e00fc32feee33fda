"""Every OpenTelemetry instrument and attribute name dbroute uses, in one place.

dbroute depends on ``opentelemetry-api`` only. Without an SDK the instruments
are no-ops costing a function call; once the application installs a
``MeterProvider``/``TracerProvider`` they report through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter

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


# --- shadow reads (dbroute.shadow) --------------------------------------------
# Attributes: ATTR_TARGET names the database the shadow ran on (the "other" one).

ATTR_SHADOW_SIDE = "dbroute.shadow.side"  # "primary" | "shadow" on SHADOW_DURATION
ATTR_SHADOW_REASON = "dbroute.shadow.reason"  # why skipped/dropped, or the mismatch kind
ATTR_ERROR_TYPE = "error.type"  # OpenTelemetry semantic convention


def _shadow_counter(name: str, description: str) -> metrics.Counter:
    return METER.create_counter(f"dbroute.shadow.{name}", unit="{read}", description=description)


SHADOW_COMPARED = _shadow_counter("compared", "Shadow reads compared with the primary")
SHADOW_MATCHED = _shadow_counter("matched", "Shadow reads equal to the primary's")
SHADOW_MISMATCHED = _shadow_counter("mismatched", "Shadow reads that differ (not lag)")
SHADOW_LAGGED = _shadow_counter(
    "lagged", "Differences explained by replication lag (journal or a later recheck)"
)
SHADOW_ERRORS = _shadow_counter("errors", "Shadow reads that failed, by error.type")
SHADOW_DROPPED = _shadow_counter("dropped", "Sampled reads not shadowed: queue full or shutdown")
SHADOW_SKIPPED = _shadow_counter("skipped", "Reads never shadowed, by reason")
SHADOW_DURATION = METER.create_histogram(
    "dbroute.shadow.duration",
    unit="s",
    description="Latency of a shadowed read on each side (dbroute.shadow.side)",
)


# --- migration phases (dbroute.phases) ----------------------------------------

ATTR_PHASE = "dbroute.phase"  # neon_only | dual_write | ramp | rds_primary | rds_only

PHASE_CHANGES = METER.create_counter(
    "dbroute.phase.changes",
    unit="{change}",
    description="Phase changes a router picked up from the phase table, by the new phase",
)
PHASE_POLL_ERRORS = METER.create_counter(
    "dbroute.phase.poll.errors",
    unit="{error}",
    description="Failed re-reads of the phase table (the router keeps its last phase)",
)


def phase_attributes(phase: str) -> Mapping[str, str]:
    """The attributes naming a migration phase (not on the hot path)."""
    return MappingProxyType({ATTR_PHASE: str(phase)})


# --- dual-write (dbroute.dualwrite) -------------------------------------------
# Attribute: ATTR_TARGET names the database written first (the session's
# primary; for replay, the database whose truth is copied).


def _rows(name: str, description: str, unit: str = "{row}") -> Counter:
    return METER.create_counter(name, unit=unit, description=description)


DUALWRITE_MIRRORED = _rows(
    "dbroute.dualwrite.mirrored", "Rows copied to the secondary before the primary committed"
)
DUALWRITE_JOURNALED = _rows(
    "dbroute.dualwrite.journaled", "Rows journaled because the secondary could not be written"
)
DUALWRITE_REPLAYED = _rows("dbroute.dualwrite.replayed", "Journal entries replayed")
DUALWRITE_SECONDARY_ERRORS = _rows(
    "dbroute.dualwrite.secondary_errors",
    "Failed or skipped (paused) writes to the secondary, by error.type",
    unit="{error}",
)
DUALWRITE_CONFLICTS = _rows(
    "dbroute.dualwrite.conflicts", "Rows changed on both databases since they were last in sync"
)
DUALWRITE_ADDED_LATENCY = METER.create_histogram(
    "dbroute.dualwrite.added_latency",
    unit="s",
    description="Time dual-write added to a commit (collect, mirror, confirm)",
)


# --- validation (dbroute.validate) --------------------------------------------

ATTR_VALIDATE_TABLE = "dbroute.validate.table"  # schema.table compared

VALIDATE_DURATION = METER.create_histogram(
    "dbroute.validate.duration", unit="s", description="Time to compare one table's data"
)
VALIDATE_ROWS = METER.create_counter(
    "dbroute.validate.rows", unit="{row}", description="Rows compared (both databases summed)"
)
VALIDATE_ROWS_DIFFERING = METER.create_counter(
    "dbroute.validate.rows_differing",
    unit="{row}",
    description="Rows found different (only on one database, or changed); pending excluded",
)
VALIDATE_REPAIRED = METER.create_counter(
    "dbroute.validate.repaired", unit="{row}", description="Rows upserted or deleted by repair"
)


def validate_attributes(table: str) -> Mapping[str, str]:
    """The attributes of a validation instrument for ``table`` (``schema.table``)."""
    return {ATTR_VALIDATE_TABLE: table}
