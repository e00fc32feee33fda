"""Guarded migration phases: neon_only → dual_write → ramp → rds_primary → rds_only.

This package's top level is pure data (settings and the router import it);
the parts that talk to databases are imported from their modules:

- :mod:`dbroute.phases.model`: phases, their rules, allowed transitions;
- :mod:`dbroute.phases.store`: the phase table and its audit history on both databases;
- :mod:`dbroute.phases.health`: each database's health;
- :mod:`dbroute.phases.checks`: the preconditions of a phase change;
- :mod:`dbroute.phases.poller`: keeps a running router on the stored phase;
- :mod:`dbroute.phases.control`: status, advance and rollback (what the CLI runs).
"""

from __future__ import annotations

from dbroute.phases.model import PHASE_ORDER, Direction, Phase, PhaseRules, Transition, rules

__all__ = ["PHASE_ORDER", "Direction", "Phase", "PhaseRules", "Transition", "rules"]
