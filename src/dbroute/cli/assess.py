"""``dbroute assess --target neon|rds``: the pre-/post-migration checks as one report."""

from __future__ import annotations

import json

import click
from rich.console import Console

from dbroute.assess import assess, render
from dbroute.cli.options import json_option, target_option
from dbroute.phases.health import admin_engine
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["assess_command"]


@click.command("assess")
@target_option(
    "--target",
    "target",
    "The database to assess (the other one is compared with it).",
    required=True,
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Tables shown in the human report.",
)
@json_option
def assess_command(target: str, top: int, as_json: bool) -> None:
    """Assess a database before or after the migration (read-only).

    Sizes, index usage (unused, duplicate, invalid), tables without a primary
    key, extensions and settings that differ, top statements, connections.
    Read-only; needs only the pg_catalog and statistics views.
    """
    settings = RoutingSettings()
    engines = {t: admin_engine(settings.url(t)) for t in Target}
    try:
        report = assess(engines, Target(target))
    finally:
        for engine in engines.values():
            engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        render(Console(), report, top)
