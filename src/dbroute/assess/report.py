"""The assessment report: one database in detail, compared with the other one.

``dbroute assess --target rds`` before the cutover answers "is RDS ready?"
(same extensions and settings, no invalid indexes, tables dual-write can
mirror); on Neon before the migration it sizes the copy and finds what to
clean up first (unused and duplicate indexes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dbroute.assess import queries as q
from dbroute.assess.indexes import Duplicate, find_duplicates
from dbroute.errors import AssessError
from dbroute.phases.health import describe_error
from dbroute.target import Target

__all__ = ["Assessment", "assess", "render"]


@dataclass
class Assessment:
    """What ``dbroute assess`` found on ``target`` (and how it differs from the other one)."""

    target: Target
    database_bytes: int
    tables: list[q.TableSize]
    indexes: list[q.IndexUsage]
    unused_indexes: list[q.IndexUsage]
    duplicate_indexes: list[Duplicate]
    invalid_indexes: list[q.IndexUsage]
    tables_without_primary_key: list[str]
    connections: dict[str, Any]
    cache_hit_rate: float | None
    top_statements: list[q.Statement] | str
    #: extension → {database: version or None}; only those that differ.
    extension_differences: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: setting → {database: value}; only those that differ.
    setting_differences: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: Why the comparison with the other database is missing, if it is.
    comparison_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["target"] = self.target.value
        data["duplicate_indexes"] = [
            {
                "index": d.index.name,
                "table": d.index.table,
                "columns": d.index.columns,
                "covered_by": d.covered_by.name,
                "covered_by_columns": d.covered_by.columns,
            }
            for d in self.duplicate_indexes
        ]
        return data


def assess(engines: dict[Target, Engine], target: Target) -> Assessment:
    """Assess ``target`` and compare it with the other database.

    Raises :class:`~dbroute.errors.AssessError` when ``target`` cannot be read.
    """
    try:
        with engines[target].connect() as conn:
            usage = q.index_usage(conn)
            report = Assessment(
                target=target,
                database_bytes=q.database_size(conn),
                tables=q.tables(conn),
                indexes=usage,
                unused_indexes=q.unused_indexes(usage),
                duplicate_indexes=find_duplicates([u.definition for u in usage if u.valid]),
                invalid_indexes=q.invalid_indexes(usage),
                tables_without_primary_key=q.tables_without_primary_key(conn),
                connections=q.connection_usage(conn),
                cache_hit_rate=q.cache_hit_rate(conn),
                top_statements=q.top_statements(conn),
            )
            mine = (q.extensions(conn), q.settings(conn))
    except SQLAlchemyError as exc:
        raise AssessError(
            f"cannot assess {target.value}: {describe_error(exc)}; check "
            f"DBROUTE_{target.name}_URL, that the server accepts connections and that "
            "its user may read the catalog"
        ) from exc
    other = target.other
    try:
        with engines[other].connect() as conn:
            theirs = (q.extensions(conn), q.settings(conn))
    except Exception as exc:  # the report on target is still useful without the comparison
        report.comparison_error = f"{other.value}: {describe_error(exc)}"
        return report
    report.extension_differences = _differences(target, mine[0], other, theirs[0])
    report.setting_differences = _differences(target, mine[1], other, theirs[1])
    return report


def _differences(
    a: Target, mine: dict[str, str], b: Target, theirs: dict[str, str]
) -> dict[str, dict[str, str | None]]:
    return {
        name: {a.value: mine.get(name), b.value: theirs.get(name)}
        for name in sorted(mine.keys() | theirs.keys())
        if mine.get(name) != theirs.get(name)
    }


def _size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def render(console: Console, report: Assessment, top: int = 20) -> None:
    """Print ``report`` as tables."""
    console.rule(f"[bold]dbroute assess: {report.target.value}")
    connections = report.connections
    console.print(
        f"database size {_size(report.database_bytes)}, {len(report.tables)} tables, "
        f"{len(report.indexes)} indexes; connections {connections['total']} / "
        f"{connections['max_connections']} ({connections['by_state']}); cache hit rate "
        f"{'-' if report.cache_hit_rate is None else f'{report.cache_hit_rate:.2%}'}"
    )
    tables = Table(
        "table",
        "total",
        "table",
        "indexes",
        "rows (est.)",
        "seq scans",
        "idx scans",
        title=f"largest tables (top {top})",
    )
    for t in report.tables[:top]:
        tables.add_row(
            t.table,
            _size(t.total_bytes),
            _size(t.table_bytes),
            _size(t.index_bytes),
            f"{t.row_estimate:,}",
            str(t.seq_scans),
            str(t.index_scans),
        )
    console.print(tables)
    _problems(console, report)
    if isinstance(report.top_statements, str):
        console.print(f"top statements: {report.top_statements}")
    else:
        statements = Table("total ms", "mean ms", "calls", "rows", "query", title="top statements")
        for s in report.top_statements:
            statements.add_row(
                f"{s.total_ms:.1f}", f"{s.mean_ms:.3f}", str(s.calls), str(s.rows), s.query[:100]
            )
        console.print(statements)
    if report.comparison_error:
        console.print(f"[yellow]no comparison with the other database: {report.comparison_error}")
        return
    for title, differences in (
        ("extensions", report.extension_differences),
        ("settings", report.setting_differences),
    ):
        if not differences:
            console.print(f"{title}: [green]same on both databases")
            continue
        sides = list(next(iter(differences.values())))
        diff = Table(title[:-1], *sides, title=f"{title} that differ")
        for name, values in differences.items():
            diff.add_row(name, *(values[s] or "[red](absent)" for s in sides))
        console.print(diff)


def _problems(console: Console, report: Assessment) -> None:
    problems = Table("check", "object", "detail", title="findings")
    for u in report.unused_indexes:
        problems.add_row(
            "unused index", u.definition.name, f"on {u.definition.table}, {_size(u.bytes)}, 0 scans"
        )
    for d in report.duplicate_indexes:
        problems.add_row(
            "duplicate index",
            d.index.name,
            f"({', '.join(d.index.columns)}) covered by {d.covered_by.name} "
            f"({', '.join(d.covered_by.columns)})",
        )
    for u in report.invalid_indexes:
        problems.add_row(
            "[red]invalid index",
            u.definition.name,
            f"on {u.definition.table}: drop and create it again",
        )
    for name in report.tables_without_primary_key:
        problems.add_row(
            "[red]no primary key",
            name,
            "dual-write and validation need one: add it or exclude the table",
        )
    if problems.row_count:
        console.print(problems)
    else:
        console.print("findings: [green]none")
