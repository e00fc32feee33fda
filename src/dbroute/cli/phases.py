"""``dbroute status``, ``dbroute advance`` and ``dbroute rollback``: guarded phase changes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from rich.console import Console

from dbroute.cli.options import json_option
from dbroute.phases.checks import CHECK_KINDS, Limits
from dbroute.phases.control import PhaseControl, default_actor
from dbroute.phases.model import PHASE_ORDER, Direction, Phase
from dbroute.phases.render import plan_dict, print_plan, print_status
from dbroute.phases.sequences import DEFAULT_WINDOW
from dbroute.settings import RoutingSettings

__all__ = ["advance_command", "rollback_command", "status_command"]


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("status")
@json_option
def status_command(as_json: bool) -> None:
    """Show the migration phase, both databases' health, journal backlog and last validation."""
    with closing(PhaseControl(RoutingSettings())) as control:
        status = control.status()
    if as_json:
        _dump(status.as_dict())
    else:
        print_status(Console(), status)


def _percent(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        percent = Decimal(value)
    except InvalidOperation as exc:
        raise click.BadParameter("expected a percentage such as 5 or 12.5") from exc
    if (
        not percent.is_finite()
        or not Decimal(0) <= percent <= Decimal(100)
        or percent != round(percent, 2)
    ):
        raise click.BadParameter("expected 0-100 with at most two decimals")
    return percent


_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _limit(
    name: str, default: float, kind: click.IntRange | click.FloatRange, text: str
) -> _Decorator:
    return click.option(name, default=default, show_default=True, type=kind, help=text)


def _change_command(direction: Direction) -> click.Command:
    verb = direction.value
    towards = "RDS" if direction is Direction.ADVANCE else "Neon"

    @click.command(verb)
    @click.option(
        "--to",
        "to",
        required=True,
        type=click.Choice([p.value for p in PHASE_ORDER]),
        help="The phase to move to.",
    )
    @click.option(
        "--percent",
        callback=_percent,
        help="RDS percentage (ramp only; advancing within ramp raises it).",
    )
    @click.option(
        "--execute/--dry-run",
        default=False,
        help="Record the change (default: only check and print).",
    )
    @click.option(
        "--reason", default="", help="Why (stored in the audit history; required with --execute)."
    )
    @click.option("--by", default=None, help="Who (default: user@host).")
    @_limit("--max-backlog", 0, click.IntRange(0), "Journal entries tolerated per database.")
    @_limit(
        "--backlog-grace",
        5.0,
        click.FloatRange(0),
        "Seconds a mirrored write may await its confirmation before it counts as backlog.",
    )
    @_limit(
        "--max-validation-age", 60, click.IntRange(1), "Minutes a clean validation stays valid."
    )
    @_limit(
        "--sequence-window",
        DEFAULT_WINDOW,
        click.IntRange(1),
        "Generated values each sequence must find free of keys (in ramp: and of the "
        "other database's sequence).",
    )
    @click.option(
        "--skip",
        multiple=True,
        type=click.Choice(CHECK_KINDS),
        help="Waive a failed check (emergencies; audited).",
    )
    @json_option
    def command(
        to: str,
        percent: Decimal | None,
        execute: bool,
        reason: str,
        by: str | None,
        max_backlog: int,
        backlog_grace: float,
        max_validation_age: int,
        sequence_window: int,
        skip: tuple[str, ...],
        as_json: bool,
    ) -> None:
        if execute and not reason.strip():
            raise click.UsageError("--execute needs --reason '...': it goes into the audit history")
        limits = Limits(
            max_backlog,
            timedelta(minutes=max_validation_age),
            timedelta(seconds=backlog_grace),
            sequence_window=sequence_window,
        )
        with closing(PhaseControl(RoutingSettings())) as control:
            plan = control.plan(direction, Phase(to), percent=percent, limits=limits, skip=skip)
            result = None
            if execute and plan.allowed:
                result = control.execute(plan, by=by or default_actor(), reason=reason)
        if as_json:
            _dump(plan_dict(plan, execute, result))
        else:
            print_plan(Console(), plan, execute, result)
        if not plan.allowed:
            sys.exit(1)

    command.help = (
        f"Move the migration one phase towards {towards}, after checking its "
        "preconditions. Dry run by default: prints the checks; --execute records the "
        "new phase on both databases, and apps polling the phase table follow."
    )
    return command


advance_command = _change_command(Direction.ADVANCE)
rollback_command = _change_command(Direction.ROLLBACK)
