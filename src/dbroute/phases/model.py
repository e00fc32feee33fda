"""The migration phases, what each one implies, and which transitions are allowed.

Pure data, no I/O: :mod:`dbroute.settings` validates flag combinations
against it and the router derives its routing from it.

=============  ==================  ============  ============================
phase          primary             RDS percent   mirroring (dual-write)
=============  ==================  ============  ============================
neon_only      Neon                0             off
dual_write     Neon                0             on (Neon → RDS)
ramp           by key's bucket     0-100         on (each primary → other)
rds_primary    RDS                 100           on (RDS → Neon)
rds_only       RDS                 100           off
=============  ==================  ============  ============================
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from dbroute.errors import PhaseTransitionError
from dbroute.target import Target

__all__ = [
    "PHASE_ORDER",
    "Direction",
    "Phase",
    "PhaseRules",
    "Transition",
    "check_transition",
    "rules",
]


class Phase(StrEnum):
    """A migration phase. Values are stable: used in env, the phase table and metrics."""

    NEON_ONLY = "neon_only"
    DUAL_WRITE = "dual_write"
    RAMP = "ramp"
    RDS_PRIMARY = "rds_primary"
    RDS_ONLY = "rds_only"

    @property
    def position(self) -> int:
        """Position in the forward order (``neon_only`` is 0)."""
        return PHASE_ORDER.index(self)


#: The phases in migration order: ``advance`` walks right, ``rollback`` left.
PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)


@dataclass(frozen=True, slots=True)
class PhaseRules:
    """What a phase implies for routing and mirroring."""

    phase: Phase
    dual_write: bool
    #: The percentage the phase fixes, or ``None`` when any 0-100 is allowed (ramp).
    fixed_percent: Decimal | None
    #: Databases that are primary for at least one key in this phase.
    primaries: frozenset[Target]
    #: Whether per-key overrides to each database are safe (that database gets mirrored writes).
    force_rds_allowed: bool
    force_neon_allowed: bool

    def percent(self, requested: Decimal | None) -> Decimal:
        """The RDS percentage of this phase given ``requested`` (used only by ramp)."""
        if self.fixed_percent is not None:
            return self.fixed_percent
        return requested if requested is not None else Decimal(0)


_BOTH = frozenset(Target)
_RULES: dict[Phase, PhaseRules] = {
    Phase.NEON_ONLY: PhaseRules(
        Phase.NEON_ONLY, False, Decimal(0), frozenset({Target.NEON}), False, True
    ),
    Phase.DUAL_WRITE: PhaseRules(
        Phase.DUAL_WRITE, True, Decimal(0), frozenset({Target.NEON}), True, True
    ),
    Phase.RAMP: PhaseRules(Phase.RAMP, True, None, _BOTH, True, True),
    Phase.RDS_PRIMARY: PhaseRules(
        Phase.RDS_PRIMARY, True, Decimal(100), frozenset({Target.RDS}), True, True
    ),
    Phase.RDS_ONLY: PhaseRules(
        Phase.RDS_ONLY, False, Decimal(100), frozenset({Target.RDS}), True, False
    ),
}


def rules(phase: Phase) -> PhaseRules:
    """The rules of ``phase``."""
    return _RULES[Phase(phase)]


class Direction(StrEnum):
    """Which command moves between two phases."""

    ADVANCE = "advance"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Transition:
    """A checked move from one phase (and percentage) to another."""

    source: Phase
    target: Phase
    source_percent: Decimal
    target_percent: Decimal

    @property
    def direction(self) -> Direction:
        """``advance`` when moving towards RDS, ``rollback`` when moving back towards Neon."""
        if self.target.position != self.source.position:
            return (
                Direction.ADVANCE
                if self.target.position > self.source.position
                else Direction.ROLLBACK
            )
        return (
            Direction.ADVANCE if self.target_percent > self.source_percent else Direction.ROLLBACK
        )

    @property
    def new_primaries(self) -> frozenset[Target]:
        """Databases primary for some key after the move: their sequences must be synced."""
        return rules(self.target).primaries

    def __str__(self) -> str:
        source = _label(self.source, self.source_percent)
        return f"{source} → {_label(self.target, self.target_percent)}"


def _label(phase: Phase, percent: Decimal) -> str:
    return f"{phase.value} ({percent} % on RDS)" if phase is Phase.RAMP else phase.value


#: Moves beyond adjacent phases. Only one: an emergency rollback from
#: rds_primary straight to dual_write puts every user back on Neon in one step
#: (instead of two) — safe because RDS mirrors to Neon in rds_primary and the
#: preconditions demand an empty journal on RDS before the move.
_EXTRA = frozenset({(Phase.RDS_PRIMARY, Phase.DUAL_WRITE)})


def check_transition(
    source: Phase,
    target: Phase,
    direction: Direction,
    *,
    source_percent: Decimal,
    target_percent: Decimal | None = None,
) -> Transition:
    """The :class:`Transition` from ``source`` to ``target``, or raise why not.

    Raises :class:`~dbroute.errors.PhaseTransitionError` for a move that is not allowed.

    Allowed: adjacent phases in ``direction``; ramp → ramp with a higher
    (advance) or lower (rollback) percentage; and rds_primary → dual_write
    as a rollback (see ``_EXTRA``). ``target_percent`` is only for ramp.
    """
    target_rules = rules(target)
    fixed = target_rules.fixed_percent
    if target_percent is not None and fixed is not None and target_percent != fixed:
        raise PhaseTransitionError(
            f"{target.value} fixes the RDS percentage at {target_rules.fixed_percent}; "
            "--percent is only for ramp"
        )
    percent = target_rules.percent(target_percent)
    if not Decimal(0) <= percent <= Decimal(100):
        raise PhaseTransitionError(f"percentage must be 0-100, got {percent}")
    move = Transition(source, target, source_percent, percent)
    if source is target:
        if source is not Phase.RAMP:
            raise PhaseTransitionError(f"already in {source.value}")
        if percent == source_percent:
            raise PhaseTransitionError(f"already in ramp at {percent} %")
    elif (source, target) not in _EXTRA and abs(target.position - source.position) != 1:
        raise PhaseTransitionError(
            f"{source.value} → {target.value} skips phases; move one phase at a time "
            f"(order: {' → '.join(p.value for p in PHASE_ORDER)})"
        )
    if move.direction is not direction:
        other = Direction.ROLLBACK if direction is Direction.ADVANCE else Direction.ADVANCE
        raise PhaseTransitionError(
            f"{move} moves towards {'RDS' if other is Direction.ADVANCE else 'Neon'}; "
            f"use `dbroute {other.value} --to {target.value}`"
        )
    return move
