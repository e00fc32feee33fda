"""``dbroute bucket KEY``: where does this user live, and why."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

from dbroute.bucketing import DEFAULT_SALT, bucket, check_key, threshold
from dbroute.target import Target

__all__ = ["bucket_command"]


def _percent(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        percent = Decimal(value)
        threshold(percent)
    except (InvalidOperation, ValueError) as exc:
        raise click.BadParameter(
            "expected a percentage from 0 to 100 with at most two decimals, e.g. 12.5"
        ) from exc
    return percent


@click.command("bucket")
@click.argument("key")
@click.option("--salt", default=DEFAULT_SALT, show_default=True, help="Bucketing salt.")
@click.option(
    "--percent", callback=_percent, help="RDS percentage to decide at (default: only the bucket)."
)
def bucket_command(key: str, salt: str, percent: Decimal | None) -> None:
    """Print KEY's bucket (0-9999) and, with --percent, its database.

    The percentage and overrides of a running app come from its DBROUTE_*
    variables; this command applies only the hash, as the contract defines it.
    """
    try:
        canonical = check_key(key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY") from exc
    value = bucket(canonical, salt)
    click.echo(f"key:    {canonical}")
    click.echo(f"salt:   {salt}")
    click.echo(f"bucket: {value}  (on RDS once the percentage is {(value + 1) / 100:.2f} or more)")
    if percent is not None:
        target = Target.RDS if value < threshold(percent) else Target.NEON
        click.echo(f"target: {target.value}  at {percent} %")
