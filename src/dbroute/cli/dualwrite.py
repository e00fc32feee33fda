"""``dbroute setup``, ``teardown``, ``replay`` and ``journal status``: dual-write operations."""

from __future__ import annotations

import click
from rich.console import Console

from dbroute.cli.options import target_option
from dbroute.dualwrite.journal import backlog
from dbroute.dualwrite.render import journal_table
from dbroute.router import Router
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["journal_group", "replay_command", "setup_command", "teardown_command"]


#: Only the router's engines are used: the app's features (mirroring, the phase
#: poller and its thread, shadow reads) stay off, whatever the environment says.
_FEATURES_OFF = {"dual_write": False, "phase_poll_seconds": 0, "shadow_read_percent": 0}


def _router() -> Router:
    return Router(RoutingSettings().model_copy(update=_FEATURES_OFF))


@click.command("setup")
@click.option(
    "--exclude",
    multiple=True,
    metavar="TABLE",
    help="Table not to mirror (TABLE or SCHEMA.TABLE); repeatable.",
)
def setup_command(exclude: tuple[str, ...]) -> None:
    """Prepare both databases for dual-write (journal, functions, capture triggers).

    Idempotent: run it before enabling DBROUTE_DUAL_WRITE and after every
    migration. Fails, naming them, on tables without a primary key unless excluded.
    """
    with _router() as router:
        for report in router.setup(exclude):
            click.echo(f"{report.target.value}: {len(report.captured)} tables captured")
            for name in report.excluded:
                click.echo(f"  excluded (not mirrored): {name}")


@click.command("teardown")
@click.option("--force", is_flag=True, help="Also when journals still hold entries (lost).")
def teardown_command(force: bool) -> None:
    """Remove everything setup installed, on both databases."""
    with _router() as router:
        router.teardown(force=force)
    click.echo("dual-write removed from both databases")


@click.command("replay")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@target_option("--prefer", "prefer", "Settle conflicts: this database's copy wins.")
def replay_command(batch_size: int, prefer: str | None) -> None:
    """Copy journaled rows to the other database until both agree.

    Safe to run from several processes at once and as often as you like (cron,
    a Kubernetes CronJob). Exits 1 when conflicts or errors were left behind.
    """
    with _router() as router:
        report = router.replay(batch_size=batch_size, prefer=Target(prefer) if prefer else None)
        left = {t.value: _backlog(router, t) for t in Target}
    click.echo(
        f"replayed {report.replayed} rows; resolved {report.resolved} conflicts; "
        f"{report.skipped} waiting on running writers; backlog {left}"
    )
    for conflict in report.conflicts:
        click.echo(f"conflict: {conflict}", err=True)
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if not report.ok:
        raise SystemExit(1)


def _backlog(router: Router, target: Target) -> int:
    with router.engine(target).connect() as connection:
        return backlog(connection)


@click.group("journal")
def journal_group() -> None:
    """Inspect the dual-write journals."""


@journal_group.command("status")
def journal_status_command() -> None:
    """Show each database's backlog by table: entries, conflicts, oldest, last error."""
    console = Console()
    with _router() as router:
        table, total = journal_table(router)
    console.print(table)
    console.print(f"backlog: {total} entries")
