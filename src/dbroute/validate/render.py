"""Human-readable reports on a rich console (the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dbroute.validate.keys import KeyValue
from dbroute.validate.repair import RepairReport
from dbroute.validate.report import DataReport, SchemaReport, TableDiff
from dbroute.validate.sequences import SequenceChange

__all__ = ["render_data", "render_repair", "render_schema", "render_sequences"]

#: Keys listed per table and kind before "... and N more".
SHOWN_KEYS = 10


def _keys(keys: Sequence[KeyValue]) -> str:
    shown = ["(" + ", ".join(key) + ")" for key in keys[:SHOWN_KEYS]]
    more = len(keys) - SHOWN_KEYS
    return " ".join(shown) + (f" ... and {more} more" if more > 0 else "")


def _say(console: Console, text: str, style: str | None = None) -> None:
    # Keys and names are data: never rich markup, never wrapped (logs are grepped).
    console.print(text, style=style, markup=False, soft_wrap=True, highlight=False)


def render_schema(console: Console, report: SchemaReport) -> None:
    """Print every schema difference (or that there is none)."""
    if report.clean:
        _say(console, "schema: no differences", "green")
        return
    table = Table("kind", "object", "difference", "neon", "rds", title="Schema differences")
    for d in report.differences:
        name = f"{d.schema}.{d.object}" if d.schema else d.object
        table.add_row(*(escape(v) for v in (d.kind, name, d.detail, d.neon or "-", d.rds or "-")))
    console.print(table)
    _say(console, f"schema: {len(report.differences)} differences", "red")


def render_data(console: Console, report: DataReport) -> None:
    """Print one line per table and the differing keys of each differing table."""
    table = Table(
        "table",
        "rows neon",
        "rows rds",
        "only neon",
        "only rds",
        "changed",
        "pending",
        "seconds",
        title="Data comparison",
    )
    for t in report.tables:
        if t.skipped is not None:
            table.add_row(escape(t.name), *["-"] * 7, style="yellow")
            continue
        table.add_row(
            escape(t.name),
            str(t.rows_neon),
            str(t.rows_rds),
            str(len(t.only_in_neon)),
            str(len(t.only_in_rds)),
            str(len(t.changed)),
            str(len(t.pending)),
            f"{t.seconds:.2f}",
            style=None if t.clean else "red",
        )
    console.print(table)
    for t in report.tables:
        _details(console, t)
    if report.clean:
        _say(console, "data: equal", "green")
    else:
        _say(
            console,
            f"data: {report.differences} rows differ, {len(report.skipped)} tables not compared",
            "red",
        )


def _details(console: Console, t: TableDiff) -> None:
    if t.skipped is not None:
        _say(console, f"{t.name}: not compared: {t.skipped}", "yellow")
    if t.uncompared_columns:
        columns = ", ".join(t.uncompared_columns)
        _say(console, f"{t.name}: columns on one side only, not compared: {columns}", "yellow")
    key = ", ".join(t.key_columns)
    if t.only_in_neon:
        _say(console, f"{t.name} only on neon ({key}): {_keys(t.only_in_neon)}")
    if t.only_in_rds:
        _say(console, f"{t.name} only on rds ({key}): {_keys(t.only_in_rds)}")
    for row in t.changed[:SHOWN_KEYS]:
        _say(console, f"{t.name} changed ({', '.join(row.key)}): {', '.join(row.columns)}")
    if len(t.changed) > SHOWN_KEYS:
        _say(console, f"{t.name}: ... and {len(t.changed) - SHOWN_KEYS} more changed rows")
    if t.pending:
        _say(console, f"{t.name} pending in the dual-write journal: {_keys(t.pending)}")


def render_repair(console: Console, report: RepairReport) -> None:
    """Print what a repair did, or would do on a dry run."""
    verb = "repaired" if report.applied else "would repair (dry run; pass --repair to write)"
    for t in report.tables:
        pending = f", {t.pending_skipped} pending keys left to replay" if t.pending_skipped else ""
        _say(
            console,
            f"{t.name}: {verb} on {report.target.value} from {report.source.value}: "
            f"{len(t.upserts)} upserts, {len(t.deletes)} deletes{pending}",
        )
    if report.applied:
        if report.verified:
            _say(console, "repaired keys re-verified: equal", "green")
        else:
            _say(console, "some repaired keys still differ", "red")


def render_sequences(console: Console, changes: Sequence[SequenceChange], dry_run: bool) -> None:
    """Print each sequence's next value before and after the sync."""
    table = Table(
        "sequence",
        "column",
        "next before",
        "next after",
        "source next",
        "max key",
        title="Sequences" + (" (dry run)" if dry_run else ""),
    )
    for c in changes:
        table.add_row(
            escape(c.sequence),
            escape(c.column or "-"),
            str(c.before),
            str(c.after),
            "-" if c.source_next is None else str(c.source_next),
            "-" if c.extreme_key is None else str(c.extreme_key),
            style="bold" if c.changed else None,
        )
    console.print(table)
    moved = sum(1 for c in changes if c.changed)
    _say(console, f"{moved} of {len(changes)} sequences {'would move' if dry_run else 'moved'}")
