"""``dbroute validate``: prove Neon and RDS hold the same schema and data; repair them.

Exit status: 0 when everything compared is equal, 3 when differences were
found (or tables could not be compared), 1 on errors, 2 on usage errors.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dbroute.cli.options import json_option, target_option
from dbroute.settings import RoutingSettings
from dbroute.target import Target
from dbroute.validate import (
    BisectOptions,
    DataOptions,
    RepairReport,
    TableDiff,
    ValidationReport,
    record_run,
    repair,
    validate,
)
from dbroute.validate.render import render_data, render_repair, render_schema

__all__ = ["DIFFERENCES_EXIT", "validate_command"]

#: Exit status when the databases differ.
DIFFERENCES_EXIT = 3


def _since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, str] | None:
    if value is None:
        return None
    column, sep, start = value.partition("=")
    if not sep or not column.strip() or not start.strip():
        raise click.BadParameter("expected COLUMN=VALUE, e.g. updated_at=2026-11-01")
    return column.strip(), start.strip()


@click.command("validate")
@click.option("--schema-only", is_flag=True, help="Compare the schemas only.")
@click.option("--data-only", "--data", "data_only", is_flag=True, help="Compare the data only.")
@click.option(
    "--schema", "schemas", multiple=True, help="Schema to compare (repeatable; default all)."
)
@click.option("--table", "tables", multiple=True, help="Table (schema.table or table; repeatable).")
@click.option("--where", help="SQL predicate on the rows (alias t), applied on both databases.")
@click.option("--since", callback=_since, help="Only rows with COLUMN >= VALUE (incremental).")
@click.option(
    "--jobs",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Tables compared at once (one connection per database each).",
)
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Connections per database scanning one large table (same snapshot).",
)
@click.option(
    "--statement-timeout",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds per query; segments split when exceeded (0: server default).",
)
@click.option(
    "--hash",
    "algorithm",
    default="hashtext",
    show_default=True,
    type=click.Choice(["hashtext", "md5"]),
    help="Row hash computed on the servers.",
)
@click.option(
    "--leaf-rows",
    default=2000,
    show_default=True,
    type=click.IntRange(10),
    help="Segments this small are downloaded (keys and hashes) and compared.",
)
@target_option(
    "--from", "source", "Authoritative database: show (or with --repair, apply) the repair."
)
@click.option("--repair", "do_repair", is_flag=True, help="Write the repair (needs --from).")
@click.option("--include-pending", is_flag=True, help="Repair keys pending in the journal too.")
@click.option("--record", is_flag=True, help="Store the summary in dbroute.validation_runs.")
@click.option("--who", help="Who ran it, for --record (default user@host).")
@json_option
def validate_command(
    schema_only: bool,
    data_only: bool,
    schemas: tuple[str, ...],
    tables: tuple[str, ...],
    where: str | None,
    since: tuple[str, str] | None,
    jobs: int,
    parallel: int,
    statement_timeout: float,
    algorithm: str,
    leaf_rows: int,
    source: str | None,
    do_repair: bool,
    include_pending: bool,
    record: bool,
    who: str | None,
    as_json: bool,
) -> None:
    """Compare Neon and RDS: schema diff, then a checksum diff down to the differing rows.

    Read-only (SELECT privileges suffice) unless --repair or --record is given.
    Reads DBROUTE_NEON_URL and DBROUTE_RDS_URL.
    """
    if schema_only and data_only:
        raise click.UsageError("--schema-only and --data-only exclude each other")
    if do_repair and source is None:
        raise click.UsageError("--repair needs --from neon|rds (the authoritative database)")
    settings = RoutingSettings()
    neon, rds = settings.url(Target.NEON), settings.url(Target.RDS)
    options = DataOptions(
        schemas=schemas or None,
        tables=tables or None,
        where=where,
        since=since,
        jobs=jobs,
        parallel=parallel,
        algorithm="md5" if algorithm == "md5" else "hashtext",
        statement_timeout_ms=int(statement_timeout * 1000),
        bisect=BisectOptions(leaf_rows=leaf_rows),
    )
    console = Console(stderr=as_json)
    with _progress(console, enabled=console.is_terminal and not as_json and not schema_only) as (
        planned,
        advance,
    ):
        report = validate(
            neon,
            rds,
            options,
            schema=not data_only,
            data=not schema_only,
            progress=advance,
            planned=planned,
        )
    output: dict[str, Any] = report.to_dict()
    repaired: RepairReport | None = None
    if source is not None and report.data is not None:
        repaired = repair(
            neon, rds, report.data, Target(source), apply=do_repair, include_pending=include_pending
        )
        output["repair"] = repaired.to_dict()
    if record:
        output["recorded"] = record_run(neon, rds, report, who).who
    if as_json:
        click.echo(json.dumps(output, indent=2, default=str))
    else:
        if report.schema is not None:
            render_schema(console, report.schema)
        if report.data is not None:
            render_data(console, report.data)
        if repaired is not None:
            render_repair(console, repaired)
    if not _equal_now(report, repaired):
        sys.exit(DIFFERENCES_EXIT)


def _equal_now(report: ValidationReport, repaired: RepairReport | None) -> bool:
    """Equal at the start, or every differing row repaired and re-verified."""
    if report.clean:
        return True
    if repaired is None or not repaired.verified or report.data is None:
        return False
    schema_equal = report.schema is None or report.schema.clean
    return schema_equal and not report.data.skipped


class _progress:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar over tables on a terminal; no-ops otherwise."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._bar = (
            Progress(
                TextColumn("comparing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=True,
            )
            if enabled
            else None
        )
        self._task: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        if self._bar is not None:
            self._bar.__enter__()
        return self._planned, self._advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def _planned(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("", total=total)

    def _advance(self, table: TableDiff) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, description=table.name)
