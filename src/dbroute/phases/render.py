"""Human and JSON renderings of a phase status and of a checked phase change.

Shared by the ``dbroute status``/``advance``/``rollback`` commands and the demo.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from dbroute.phases.control import Plan, Status
from dbroute.phases.model import Phase
from dbroute.phases.store import StoredPhase

__all__ = ["plan_dict", "print_plan", "print_status"]


def print_status(console: Console, status: Status) -> None:
    """Print ``status`` as ``dbroute status`` does."""
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
        "sequences without room",
        *(
            v if isinstance(v, str) else (_yes(True, "none") if not v else f"[red]{len(v)}")
            for v in (status.sequences_without_room[t] for t in status.health)
        ),
    )
    console.print(table)
    for target, blocked in status.sequences_without_room.items():
        if not isinstance(blocked, str):
            for blocker in blocked[:5]:
                console.print(f"[red]{target.value}[/]: {blocker.detail}")
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


def plan_dict(
    plan: Plan, execute: bool, result: tuple[StoredPhase, dict[Any, str]] | None
) -> dict[str, Any]:
    """``plan`` (and its outcome) as ``advance``/``rollback --json`` print it."""
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


def print_plan(
    console: Console, plan: Plan, execute: bool, result: tuple[StoredPhase, dict[Any, str]] | None
) -> None:
    """Print ``plan``'s checks and outcome as ``advance``/``rollback`` do."""
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
