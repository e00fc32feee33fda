"""``dbroute demo``: the whole migration flow on two real local PostgreSQL servers.

The demo is a list of steps (one module each) run in order against one
:class:`DemoContext`; later capabilities add their step to :data:`STEPS`.
"""

from __future__ import annotations

from collections.abc import Callable

from dbroute.demo.context import DemoContext
from dbroute.demo.dualwrite import dualwrite_step
from dbroute.demo.phases import phases_step
from dbroute.demo.routing import routing_step
from dbroute.demo.shadow import shadow_step
from dbroute.demo.validation import validation_step

__all__ = ["STEPS", "DemoContext", "DemoStep", "run_demo"]

DemoStep = Callable[[DemoContext], None]

#: The demo's steps, in order.
STEPS: list[DemoStep] = [routing_step, dualwrite_step, shadow_step, validation_step, phases_step]


def run_demo(context: DemoContext, steps: list[DemoStep] | None = None) -> None:
    """Run ``steps`` (default: all of :data:`STEPS`) against ``context``."""
    for step in steps if steps is not None else STEPS:
        step(context)
