"""``dbroute status``, ``dbroute advance`` and ``dbroute rollback``: guarded phase changes."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dbroute.phases.checks import CHECK_KINDS, Limits
from dbroute.phases.control import PhaseControl, Plan, Status, default_actor
from dbroute.phases.model import PHASE_ORDER, Direction, Phase
from dbroute.phases.store import StoredPhase
from dbroute.settings import RoutingSettings

__all__ = ["advance_command", "rollback_command", "status_command"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("status")
@_json_option
def status_command(as_json: bool) -> None:
    """Show the migration phase, both databases' health, journal backlog and last validation."""
    with PhaseControl(RoutingSettings()) as control:
        status = control.status()
    if as_json:
        _dump(status.as_dict())
    else:
        _print_status(Console(), status)


def _print_status(console: Console, status: Status) -> None:
    current = status.store.current
    percent = f", {current.rds_percent} % on RDS" if current.phase is Phase.RAMP else ""
    console.print(
        f"[bold]phase:[/] {current.phase.value}{percent}  (version {current.version}, "
        f"{current.changed_at or 'never changed'} by {current.changed_by}: {current.reason})"
    )
    if status.pinned is not None:
        console.print(
            f"[yellow]this environment pins DBROUTE_PHASE={status.pinned.value}: "
            "apps with it set ignore the stored phase"
        )
    if not status.store.in_sync:
        rows = ", ".join(
            f"{t.value}: {r.version if isinstance(r, StoredPhase) else r}"
            for t, r in status.store.rows.items()
        )
        console.print(
            f"[yellow]phase table differs between the databases ({rows}); the newest "
            "version is in force and the next advance/rollback repairs the other"
        )
    table = Table("", *(t.value for t in status.health))
    health = status.health.values()
    table.add_row(
        "reachable", *(_yes(h.reachable) if h.reachable else f"[red]no: {h.error}" for h in health)
    )
    table.add_row(
        "connect latency", *(f"{h.connect_ms} ms" if h.reachable else "-" for h in health)
    )
    table.add_row("server version", *(h.server_version or "-" for h in health))
    table.add_row(
        "read-only",
        *("-" if h.read_only is None else ("[red]yes" if h.read_only else "no") for h in health),
    )
    table.add_row(
        "connections",
        *(f"{h.connections} / {h.max_connections}" if h.reachable else "-" for h in health),
    )
    table.add_row("journal backlog", *(str(status.backlog[t]) for t in status.health))
    table.add_row(
        "sequences behind keys",
        *(
            v if isinstance(v, str) else (_yes(True, "none") if not v else f"[red]{len(v)}")
            for v in (status.lagging_sequences[t] for t in status.health)
        ),
    )
    console.print(table)
    validation = status.validation
    if validation is None or isinstance(validation, str):
        console.print(f"last validation: {validation or 'none recorded'}")
    else:
        result = "[green]clean" if validation.clean else "[red]differences found"
        console.print(
            f"last validation: {result}[/], finished {validation.finished_at} "
            f"(recorded on {validation.target.value})"
        )
    if status.history:
        console.print("recent changes:")
        for h in status.history:
            console.print(
                f"  v{h.version} {h.changed_at:%Y-%m-%d %H:%M:%S} {h.from_phase.value} → "
                f"{h.to_phase.value} ({h.to_percent} %) by {h.changed_by}: {h.reason}"
            )


def _yes(value: bool, text: str = "yes") -> str:
    return f"[green]{text}" if value else "[red]no"


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
    @click.option(
        "--max-backlog",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="Journal entries tolerated per database.",
    )
    @click.option(
        "--max-validation-age",
        default=60,
        show_default=True,
        type=click.IntRange(1),
        help="Minutes a clean validation stays valid.",
    )
    @click.option(
        "--skip",
        multiple=True,
        type=click.Choice(CHECK_KINDS),
        help="Waive a failed check (emergencies; audited).",
    )
    @_json_option
    def command(
        to: str,
        percent: Decimal | None,
        execute: bool,
        reason: str,
        by: str | None,
        max_backlog: int,
        max_validation_age: int,
        skip: tuple[str, ...],
        as_json: bool,
    ) -> None:
        if execute and not reason.strip():
            raise click.UsageError("--execute needs --reason '...': it goes into the audit history")
        limits = Limits(max_backlog, timedelta(minutes=max_validation_age))
        with PhaseControl(RoutingSettings()) as control:
            plan = control.plan(direction, Phase(to), percent=percent, limits=limits, skip=skip)
            result = None
            if execute and plan.allowed:
                result = control.execute(plan, by=by or default_actor(), reason=reason)
        if as_json:
            _dump(_plan_dict(plan, execute, result))
        else:
            _print_plan(Console(), plan, execute, result)
        if not plan.allowed:
            sys.exit(1)

    command.help = (
        f"Move the migration one phase towards {towards}, after checking its "
        "preconditions. Dry run by default: prints the checks; --execute records the "
        "new phase on both databases, and apps polling the phase table follow."
    )
    return command


def _plan_dict(
    plan: Plan, execute: bool, result: tuple[StoredPhase, dict[Any, str]] | None
) -> dict[str, Any]:
    return {
        "transition": str(plan.transition),
        "from": plan.transition.source.value,
        "to": plan.transition.target.value,
        "rds_percent": str(plan.transition.target_percent),
        "allowed": plan.allowed,
        "executed": result is not None,
        "dry_run": not execute,
        "version": result[0].version if result else None,
        "not_recorded_on": {t.value: e for t, e in result[1].items()} if result else {},
        "checks": [check.as_dict() for check in plan.checks],
    }


def _print_plan(
    console: Console, plan: Plan, execute: bool, result: tuple[StoredPhase, dict[Any, str]] | None
) -> None:
    console.print(f"[bold]{plan.transition}[/]")
    table = Table("check", "result", "detail")
    for check in plan.checks:
        mark = "[green]ok" if check.ok else ("[yellow]waived" if check.skipped else "[red]FAILED")
        table.add_row(check.name, mark, check.detail)
    console.print(table)
    if not plan.allowed:
        console.print("[red]refused:[/] fix the failed checks above, then run this again.")
    elif result is not None:
        stored, failures = result
        console.print(
            f"[green]done:[/] phase {stored.phase.value} recorded (version "
            f"{stored.version}); apps follow within DBROUTE_PHASE_POLL_SECONDS."
        )
        for target, error in failures.items():
            console.print(
                f"[yellow]not recorded on {target.value}: {error}; it is in force "
                "anyway (the newest version wins) — rerun once it is back."
            )
    elif not execute:
        console.print("dry run: all checks pass; add --execute --reason '...' to make the change.")


advance_command = _change_command(Direction.ADVANCE)
rollback_command = _change_command(Direction.ROLLBACK)
