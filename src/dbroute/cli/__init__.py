"""The ``dbroute`` command: one module per command group, registered here."""

from __future__ import annotations

import logging
from typing import Any

import click

from dbroute import __version__
from dbroute.cli.assess import assess_command
from dbroute.cli.bucket import bucket_command
from dbroute.cli.demo import demo_command
from dbroute.cli.dualwrite import (
    journal_group,
    replay_command,
    setup_command,
    teardown_command,
)
from dbroute.cli.phases import advance_command, rollback_command, status_command
from dbroute.cli.sequences import sequences_group
from dbroute.cli.validate import validate_command
from dbroute.errors import DBRouteError

__all__ = ["main"]


class _Group(click.Group):
    """Turns a :class:`DBRouteError` into a one-line message and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBRouteError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="dbroute")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Move a PostgreSQL database from Neon to Amazon RDS with no downtime.

    Commands read the same DBROUTE_* environment variables as the library.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


main.add_command(bucket_command)
main.add_command(demo_command)
main.add_command(setup_command)
main.add_command(teardown_command)
main.add_command(replay_command)
main.add_command(journal_group)
main.add_command(status_command)
main.add_command(advance_command)
main.add_command(rollback_command)
main.add_command(assess_command)
main.add_command(validate_command)
main.add_command(sequences_group)
