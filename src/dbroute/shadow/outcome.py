"""What one shadow read came to: the typed records handed to callbacks and the report."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dbroute.shadow.compare import Difference
from dbroute.target import Target

__all__ = ["ShadowMismatch", "ShadowOutcome", "Verdict"]


class Verdict(StrEnum):
    """The classification of one shadow read."""

    MATCH = "match"
    #: The databases disagree and lag does not explain it.
    MISMATCH = "mismatch"
    #: They disagree, but the rows sit in the dual-write journal or a recheck agreed.
    LAGGED = "lagged"
    #: They disagree and an ``ignore`` callable said that is fine.
    IGNORED = "ignored"
    #: The shadow (or a user callable) failed; nothing was compared.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ShadowMismatch:
    """One read the two databases answered differently (``on_mismatch`` receives it).

    Row values are personal data in most applications: ``primary_row`` and
    ``shadow_row`` stay ``None`` unless ``DBROUTE_SHADOW_INCLUDE_VALUES=true``.
    """

    #: Statement fingerprint (16 hex digits) and its normalised SQL, without literals.
    fingerprint: str
    statement: str
    #: The database that answered the caller, and the one that was shadowed.
    primary: Target
    shadow: Target
    difference: Difference
    primary_rows: int
    shadow_rows: int
    #: Index in the primary's rows of the first row that differs (see :class:`Comparison`).
    first_difference: int | None
    primary_row: tuple[Any, ...] | None = None
    shadow_row: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        values = ", values included" if self.primary_row or self.shadow_row else ""
        return (
            f"ShadowMismatch({self.fingerprint} {self.difference.value} {self.primary.value}="
            f"{self.primary_rows} rows, {self.shadow.value}={self.shadow_rows} rows, "
            f"first_difference={self.first_difference}{values})"
        )


@dataclass(frozen=True, slots=True)
class ShadowOutcome:
    """Everything known about one shadow read (``publish`` callbacks receive it)."""

    fingerprint: str
    statement: str
    primary: Target
    shadow: Target
    verdict: Verdict
    primary_seconds: float
    #: ``None`` when the shadow failed before returning rows.
    shadow_seconds: float | None
    difference: Difference | None = None
    #: The exception class name when ``verdict`` is ``ERROR``.
    error_type: str | None = None
    mismatch: ShadowMismatch | None = None
