"""What a validation found: plain data, JSON-ready through ``to_dict()``.

Reports carry keys and column names, never row values: they end up in CI
logs, chat and ``dbroute.validation_runs``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from dbroute.validate.keys import KeyValue

__all__ = [
    "ChangedRow",
    "DataReport",
    "SchemaDifference",
    "SchemaReport",
    "TableDiff",
    "ValidationReport",
]


@dataclass(frozen=True)
class ChangedRow:
    """A key present on both servers whose row differs, and the columns that differ."""

    key: KeyValue
    columns: tuple[str, ...]


@dataclass
class TableDiff:
    """The data comparison of one table.

    ``only_in_neon``/``only_in_rds`` hold keys of rows missing on the other
    server; ``changed`` rows exist on both with different values; ``pending``
    keys differ but sit in a dual-write journal, so the difference is expected
    to be resolved by replay. ``skipped`` says why a table was not compared.
    """

    schema: str
    table: str
    key_columns: tuple[str, ...] = ()
    rows_neon: int = 0
    rows_rds: int = 0
    only_in_neon: list[KeyValue] = field(default_factory=list)
    only_in_rds: list[KeyValue] = field(default_factory=list)
    changed: list[ChangedRow] = field(default_factory=list)
    pending: list[KeyValue] = field(default_factory=list)
    #: Columns present on one server only: not compared (the schema diff reports them).
    uncompared_columns: tuple[str, ...] = ()
    skipped: str | None = None
    queries: int = 0
    rows_downloaded: int = 0
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"

    @property
    def differences(self) -> int:
        """Rows that differ (pending rows not counted)."""
        return len(self.only_in_neon) + len(self.only_in_rds) + len(self.changed)

    @property
    def clean(self) -> bool:
        """True when the table was compared and no row differs (pending rows allowed)."""
        return self.skipped is None and self.differences == 0

    def differing_keys(self) -> list[KeyValue]:
        """Every key that differs, pending ones excluded."""
        return [*self.only_in_neon, *self.only_in_rds, *(c.key for c in self.changed)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["changed"] = [{"key": list(c.key), "columns": list(c.columns)} for c in self.changed]
        for name in ("only_in_neon", "only_in_rds", "pending"):
            data[name] = [list(key) for key in data[name]]
        data["differences"] = self.differences
        return data


@dataclass
class DataReport:
    """The data comparison of every selected table."""

    tables: list[TableDiff] = field(default_factory=list)

    @property
    def differences(self) -> int:
        """Differing rows over all tables."""
        return sum(t.differences for t in self.tables)

    @property
    def skipped(self) -> list[TableDiff]:
        """Tables that could not be compared (no key, missing on one server)."""
        return [t for t in self.tables if t.skipped is not None]

    @property
    def clean(self) -> bool:
        """True when every table was compared and none differs."""
        return all(t.clean for t in self.tables)

    def table(self, schema: str, name: str) -> TableDiff:
        """The result of ``schema.name``."""
        return next(t for t in self.tables if (t.schema, t.table) == (schema, name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "clean": self.clean,
            "differences": self.differences,
            "tables": [t.to_dict() for t in self.tables],
        }


@dataclass(frozen=True)
class SchemaDifference:
    """One schema difference: ``kind`` is table, column, constraint, index, sequence, extension.

    ``neon``/``rds`` describe the object on each server (``None``: absent there).
    """

    kind: str
    schema: str
    object: str
    detail: str
    neon: str | None
    rds: str | None


@dataclass
class SchemaReport:
    """Every schema difference found."""

    differences: list[SchemaDifference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when the schemas match."""
        return not self.differences

    def of_kind(self, kind: str) -> list[SchemaDifference]:
        """The differences of one kind."""
        return [d for d in self.differences if d.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"clean": self.clean, "differences": [asdict(d) for d in self.differences]}


@dataclass
class ValidationReport:
    """A whole validation run: schema diff and/or data diff."""

    started_at: datetime
    finished_at: datetime
    schema: SchemaReport | None = None
    data: DataReport | None = None

    @property
    def clean(self) -> bool:
        """True when every check that ran found nothing."""
        return all(part.clean for part in (self.schema, self.data) if part is not None)

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready summary (what ``dbroute.validation_runs`` stores)."""
        summary: dict[str, Any] = {"clean": self.clean}
        if self.schema is not None:
            summary["schema_differences"] = len(self.schema.differences)
        if self.data is not None:
            summary["tables"] = len(self.data.tables)
            summary["rows_differing"] = self.data.differences
            summary["rows_pending"] = sum(len(t.pending) for t in self.data.tables)
            summary["tables_differing"] = sorted(t.name for t in self.data.tables if t.differences)
            summary["tables_skipped"] = {t.name: t.skipped for t in self.data.skipped}
        return summary

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of everything."""
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "clean": self.clean,
            "summary": self.summary(),
            "schema": None if self.schema is None else self.schema.to_dict(),
            "data": None if self.data is None else self.data.to_dict(),
        }
