"""``dbroute demo``: the migration flow on two real local PostgreSQL servers."""

from __future__ import annotations

import click
from rich.console import Console

from dbroute.demo import DemoContext, run_demo
from dbroute.settings import safe_url
from dbroute.testing.servers import start_server_pair

__all__ = ["demo_command"]


@click.command("demo")
@click.option(
    "--users",
    default=2000,
    show_default=True,
    type=click.IntRange(10, 1_000_000),
    help="Synthetic users to route.",
)
def demo_command(users: int) -> None:
    """Run the migration flow on two local PostgreSQL servers (one plays Neon, one RDS).

    Servers come from DBROUTE_TEST_NEON_URL/DBROUTE_TEST_RDS_URL, else Docker
    (testcontainers), else local PostgreSQL binaries, else the pgserver package.
    """
    console = Console()
    with start_server_pair() as pair:
        console.print(
            f"PostgreSQL servers from [bold]{pair.source}[/]: "
            f"neon={safe_url(pair.neon.url)}  rds={safe_url(pair.rds.url)}"
        )
        run_demo(DemoContext(pair.neon.url, pair.rds.url, console, users=users))
