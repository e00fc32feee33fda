"""Write conflicts: a row changed on both databases since they were last in sync.

During a ramp some users write on Neon and others on RDS, so a shared row can
be changed on both sides. Each side's unmirrored changes wait in its own
journal (kind ``change``); when both journals hold the same key, neither
side's copy may overwrite the other's silently. dbroute detects it in two
places, reports it (a :class:`Conflict` record, a warning log, the
``dbroute.dualwrite.conflicts`` counter) and leaves the journal entries until
an operator picks the winner (``dbroute replay --prefer neon|rds``).

* mirroring: ``dbroute.apply()`` raises SQLSTATE ``DBR01`` after applying
  when the destination's journal holds a change of one of the keys; the apply
  rolls back and the writer journals its keys marked ``conflict``;
* replay: before copying, the destination's journal is checked the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbroute.target import Target
from dbroute.telemetry import DUALWRITE_CONFLICTS, target_attributes

__all__ = ["CONFLICT_SQLSTATE", "Conflict", "parse_conflicts", "report_conflicts"]

log = logging.getLogger("dbroute.dualwrite")

#: SQLSTATE ``dbroute.apply()`` raises on a conflict.
CONFLICT_SQLSTATE = "DBR01"


@dataclass(frozen=True, slots=True)
class Conflict:
    """One row changed on both databases: its table, key, and the side whose copy was held back."""

    table_schema: str
    table_name: str
    pk: tuple[str, ...]
    source: Target
    stage: str  # "mirror" or "replay"

    def as_json(self) -> dict[str, Any]:
        """The conflict as plain JSON (what ``dbroute.rejournal()`` marks)."""
        return {"schema": self.table_schema, "table": self.table_name, "pk": list(self.pk)}

    def __str__(self) -> str:
        key = ", ".join(self.pk)
        return f"{self.table_schema}.{self.table_name} ({key}) changed on both databases"


def parse_conflicts(detail: str | None, source: Target, stage: str) -> tuple[Conflict, ...]:
    """The conflicts listed in the detail of a ``DBR01`` error."""
    if not detail:
        return ()
    return tuple(
        Conflict(item["schema"], item["table"], tuple(item["pk"]), source, stage)
        for item in json.loads(detail)
    )


def report_conflicts(conflicts: Iterable[Conflict]) -> None:
    """Log and count conflicts; the journal entries stay until resolved."""
    for conflict in conflicts:
        DUALWRITE_CONFLICTS.add(1, target_attributes(conflict.source))
        log.warning(
            "dual-write conflict: %s; %s's copy held back (%s); resolve with "
            "`dbroute replay --prefer neon|rds`",
            conflict,
            conflict.source.value,
            conflict.stage,
        )
