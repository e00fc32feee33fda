"""The inputs of every routing decision, in one immutable snapshot.

The :class:`~dbroute.router.Router` reads one :class:`RoutingState` per
decision and swaps it whole when the stored migration phase changes (see
:mod:`dbroute.phases.poller`): a decision never sees half of an update, and
the hot path pays one attribute load for it, no lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from dbroute.bucketing import threshold
from dbroute.phases.model import Phase, rules
from dbroute.settings import RoutingSettings

__all__ = ["RoutingState"]


@dataclass(frozen=True, slots=True)
class RoutingState:
    """Where keys go and whether writes are mirrored, at one moment."""

    salt: str
    rds_percent: Decimal
    threshold: int
    kill_switch: bool
    force_rds: frozenset[str]
    force_neon: frozenset[str]
    dual_write: bool
    #: The phase in force, or ``None`` when only the low-level flags are set.
    phase: Phase | None = None
    #: Version of the stored phase this state came from; 0 when from settings alone.
    phase_version: int = 0

    @classmethod
    def from_settings(cls, settings: RoutingSettings) -> RoutingState:
        """The state ``settings`` describe (``DBROUTE_PHASE`` already implies its flags)."""
        return cls(
            salt=settings.salt,
            rds_percent=settings.rds_percent,
            threshold=threshold(settings.rds_percent),
            kill_switch=settings.kill_switch,
            force_rds=settings.force_rds,
            force_neon=settings.force_neon,
            dual_write=settings.dual_write,
            phase=settings.phase,
        )

    def with_phase(self, phase: Phase, rds_percent: Decimal, version: int) -> RoutingState:
        """A copy of this state moved to ``phase`` (a stored phase): its percentage and mirroring.

        The overrides (kill switch, forced keys) stay: they are the operator's
        emergency levers and win over any phase.
        """
        phase_rules = rules(phase)
        percent = phase_rules.percent(rds_percent)
        return replace(
            self,
            rds_percent=percent,
            threshold=threshold(percent),
            dual_write=phase_rules.dual_write,
            phase=phase,
            phase_version=version,
        )
