"""``dbroute sequences sync --from neon|rds [--headroom N]``: move the other side's sequences."""

from __future__ import annotations

import json

import click
from rich.console import Console

from dbroute.cli.options import json_option, target_option
from dbroute.settings import RoutingSettings
from dbroute.target import Target
from dbroute.validate import sync_sequences
from dbroute.validate.render import render_sequences

__all__ = ["sequences_group"]


@click.group("sequences")
def sequences_group() -> None:
    """Sequence maintenance after a copy (pg_restore, logical replication)."""


@click.command("sync")
@target_option(
    "--from",
    "source",
    "The authoritative database; the other one's sequences move.",
    required=True,
)
@click.option("--schema", "schemas", multiple=True, help="Schema (repeatable; default all).")
@click.option("--dry-run", is_flag=True, help="Show what would move; write nothing.")
@click.option(
    "--headroom",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Start the other database's sequences N values past the source's, so both can "
    "generate keys during a ramp (e.g. 1000000000 for bigint keys).",
)
@json_option
def sync_command(
    source: str, schemas: tuple[str, ...], dry_run: bool, headroom: int, as_json: bool
) -> None:
    """Move the other database's sequences to at least the source's and the keys' position.

    Every sequence and identity column of the other database is set to at
    least max(its largest key + 1, the source sequence's next value + N with
    --headroom N). Sequences never move back. Idempotent.
    """
    settings = RoutingSettings()
    changes = sync_sequences(
        settings.url(Target.NEON),
        settings.url(Target.RDS),
        Target(source),
        dry_run=dry_run,
        schemas=schemas or None,
        headroom=headroom,
    )
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in changes], indent=2))
    else:
        render_sequences(Console(), changes, dry_run)


sequences_group.add_command(sync_command)
