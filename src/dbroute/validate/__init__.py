"""Migration validation: prove Neon and RDS hold the same schema and data, and fix them.

Python API (databases are SQLAlchemy engines or URLs; see :func:`engines_of`
for a :class:`~dbroute.Router`)::

    from dbroute.validate import validate, repair, sync_sequences

    report = validate(neon_url, rds_url)               # schema diff + data diff
    report.clean                                        # True when nothing differs
    plan = repair(neon_url, rds_url, report.data, source=Target.NEON)        # dry run
    repair(neon_url, rds_url, report.data, source=Target.NEON, apply=True)  # fix
    sync_sequences(neon_url, rds_url, source=Target.NEON)

See ``docs/validation.md``.
"""

from dbroute.validate.api import compare_data, compare_schemas, validate
from dbroute.validate.bisect import BisectOptions
from dbroute.validate.connect import Database, engines_of
from dbroute.validate.data import DataOptions
from dbroute.validate.record import ValidationRecord, last_validation, record_run
from dbroute.validate.repair import RepairReport, TableRepair, repair
from dbroute.validate.report import (
    ChangedRow,
    DataReport,
    SchemaDifference,
    SchemaReport,
    TableDiff,
    ValidationReport,
)
from dbroute.validate.sequences import SequenceChange, sync_sequences

__all__ = [
    "BisectOptions",
    "ChangedRow",
    "DataOptions",
    "DataReport",
    "Database",
    "RepairReport",
    "SchemaDifference",
    "SchemaReport",
    "SequenceChange",
    "TableDiff",
    "TableRepair",
    "ValidationRecord",
    "ValidationReport",
    "compare_data",
    "compare_schemas",
    "engines_of",
    "last_validation",
    "record_run",
    "repair",
    "sync_sequences",
    "validate",
]
