"""One queued shadow read, and the execution options that steer it per statement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbroute.shadow.results import ResultSet
from dbroute.shadow.statement import StatementInfo
from dbroute.target import Target

__all__ = ["OPT_COMPARE", "OPT_IGNORE", "OPT_OUT", "Comparator", "ShadowJob"]

#: ``execution_options(dbroute_shadow=False)``: never shadow this statement.
OPT_OUT = "dbroute_shadow"
#: ``execution_options(dbroute_shadow_compare=fn)``: ``fn(primary, shadow) -> bool`` decides
#: equality.
OPT_COMPARE = "dbroute_shadow_compare"
#: ``execution_options(dbroute_shadow_ignore=fn)``: ``fn(primary, shadow) -> bool``, True ignores a
#: difference.
OPT_IGNORE = "dbroute_shadow_ignore"

#: ``compare`` and ``ignore`` callables receive both :class:`ResultSet` objects.
Comparator = Callable[[ResultSet, ResultSet], bool]


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """Everything the background worker needs: the statement and the primary's answer."""

    primary_target: Target
    info: StatementInfo
    sql: str
    parameters: Mapping[str, Any] | Sequence[Any] | None
    primary: ResultSet
    primary_seconds: float
    compare: Comparator | None = None
    ignore: Comparator | None = None
