"""The entry points: schema diff, data diff, or both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dbroute.validate.connect import Database, engine_pair
from dbroute.validate.data import DataOptions, compare_tables, plan_tables
from dbroute.validate.report import DataReport, SchemaReport, TableDiff, ValidationReport
from dbroute.validate.schema import diff_schemas

__all__ = ["compare_data", "compare_schemas", "validate"]

Progress = Callable[[TableDiff], None]


def compare_schemas(
    neon: Database, rds: Database, schemas: Sequence[str] | None = None
) -> SchemaReport:
    """Tables, columns, keys, constraints, indexes, sequences and extensions that differ.

    ``schemas`` defaults to every user schema (``dbroute`` and system schemas excluded).
    """
    with engine_pair(neon, rds, connections=1) as (ours, theirs):
        return diff_schemas(ours, theirs, schemas)


def compare_data(
    neon: Database,
    rds: Database,
    options: DataOptions | None = None,
    progress: Progress | None = None,
    *,
    planned: Callable[[int], None] | None = None,
) -> DataReport:
    """Compare the rows of every table with a key; find exactly the rows that differ.

    Each table is read inside a REPEATABLE READ READ ONLY snapshot on each
    server; ``options.jobs`` tables run at once. ``progress`` is called with
    each finished table, ``planned`` with the number of tables once known.
    """
    options = options or DataOptions()
    with engine_pair(neon, rds, connections=options.jobs * options.parallel) as (ours, theirs):
        plans = plan_tables(ours, theirs, options)
        if planned is not None:
            planned(len(plans))
        return compare_tables(ours, theirs, plans, options, progress)


def validate(
    neon: Database,
    rds: Database,
    options: DataOptions | None = None,
    *,
    schema: bool = True,
    data: bool = True,
    progress: Progress | None = None,
    planned: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Run the schema diff and/or the data diff and time the whole run."""
    options = options or DataOptions()
    started = datetime.now(UTC)
    with engine_pair(neon, rds, connections=options.jobs * options.parallel) as (ours, theirs):
        schema_report = diff_schemas(ours, theirs, options.schemas) if schema else None
        data_report = (
            compare_data(ours, theirs, options, progress, planned=planned) if data else None
        )
    return ValidationReport(started, datetime.now(UTC), schema_report, data_report)
