"""Is a difference just replication lag? The dual-write journal, then a recheck.

1. Journal: each result column knows the table and column it came from
   (libpq's ``PQftable``/``PQftablecol``). When a table's whole primary key is
   in the result, the differing rows' keys are looked up in both databases'
   dual-write journals (:func:`dbroute.dualwrite.journal.pending_keys`). If
   every differing row has a key waiting there, the difference is lag.
2. Recheck: a moment later (``DBROUTE_SHADOW_RECHECK_DELAY``) the statement
   runs again on both databases through the shadow pools; if they now agree,
   the difference was lag (a write landed on one side first).

Order, column and type differences are never lag.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from dbroute.dualwrite.journal import pending_keys
from dbroute.shadow.compare import Comparison, Difference, compare_results
from dbroute.shadow.results import ResultSet
from dbroute.shadow.runner import ShadowRunner
from dbroute.shadow.wire import WorkerConfig
from dbroute.target import Target

__all__ = ["LagExplainer"]

_TABLE_SQL = """
select n.nspname, c.relname, i.indkey::int2[]
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_index i on i.indrelid = c.oid and i.indisprimary
where c.oid = %(oid)s
"""

_LAG_DIFFERENCES = frozenset({Difference.ROW_COUNT, Difference.VALUES})


@dataclass(frozen=True, slots=True)
class _Key:
    """Where a table's primary key sits in a result."""

    schema: str
    table: str
    positions: tuple[int, ...]


class LagExplainer:
    """Decides whether a difference is lag (see the module docstring)."""

    def __init__(
        self,
        runner: ShadowRunner,
        *,
        recheck_delay: float,
        float_tolerance: float,
        closing: threading.Event,
    ) -> None:
        self._runner = runner
        self._closing = closing
        self._delay = recheck_delay
        self._tolerance = float_tolerance
        self._tables: dict[tuple[Target, int], tuple[str, str, tuple[int, ...]] | None] = {}

    @classmethod
    def from_config(cls, config: WorkerConfig, closing: threading.Event) -> LagExplainer:
        """An explainer on shadow pools of its own (its :attr:`runner`), as ``config`` says."""
        runner = ShadowRunner(
            config.urls,
            pool_size=config.pool_size,
            statement_timeout=config.statement_timeout,
            row_cap=config.row_cap,
        )
        return cls(
            runner,
            recheck_delay=config.recheck_delay,
            float_tolerance=config.float_tolerance,
            closing=closing,
        )

    @property
    def runner(self) -> ShadowRunner:
        """The pools its lookups and rechecks run on."""
        return self._runner

    def is_lag(
        self,
        *,
        primary_target: Target,
        sql: str,
        parameters: Mapping[str, Any] | Sequence[Any] | None,
        ordered: bool,
        primary: ResultSet,
        shadow: ResultSet,
        comparison: Comparison,
    ) -> bool:
        """Whether ``comparison`` (a difference) is explained by replication lag."""
        if comparison.difference not in _LAG_DIFFERENCES:
            return False
        if self._in_journal(primary_target, primary, shadow, comparison):
            return True
        if self._delay <= 0:
            return False
        if self._closing.wait(self._delay):  # shutting down: no recheck, no verdict of lag
            return False
        again_primary, _ = self._runner.run(primary_target, sql, parameters)
        again_shadow, _ = self._runner.run(primary_target.other, sql, parameters)
        return compare_results(
            again_primary, again_shadow, ordered=ordered, float_tolerance=self._tolerance
        ).equal

    # --- journal -------------------------------------------------------------

    def _in_journal(
        self, target: Target, primary: ResultSet, shadow: ResultSet, comparison: Comparison
    ) -> bool:
        rows = [primary.rows[i] for i in comparison.primary_unmatched]
        rows += [shadow.rows[j] for j in comparison.shadow_unmatched]
        if not rows or not primary.table_oids:
            return False
        keys = self._keys(target, primary.table_oids)
        if not keys:
            return False
        pending: dict[_Key, set[tuple[str, ...]]] = {}
        for database in (target, target.other):
            with self._runner.connect(database) as connection:
                for key in keys:
                    found = pending_keys(connection, key.schema, key.table)
                    pending.setdefault(key, set()).update(found)
        return all(_row_pending(row, keys, pending) for row in rows)

    def _keys(self, target: Target, table_oids: Iterable[tuple[int, int]]) -> list[_Key]:
        columns: dict[int, dict[int, int]] = {}
        for position, (oid, attnum) in enumerate(table_oids):
            if oid:
                columns.setdefault(oid, {}).setdefault(attnum, position)
        keys = []
        for oid, by_attnum in columns.items():
            table = self._table(target, oid)
            if table is None:
                continue
            schema, name, pk = table
            if pk and all(a in by_attnum for a in pk):
                keys.append(_Key(schema, name, tuple(by_attnum[a] for a in pk)))
        return keys

    def _table(self, target: Target, oid: int) -> tuple[str, str, tuple[int, ...]] | None:
        if (target, oid) not in self._tables:
            with self._runner.connect(target) as connection:
                row = connection.exec_driver_sql(_TABLE_SQL, {"oid": oid}).first()
            self._tables[target, oid] = (row[0], row[1], tuple(row[2])) if row else None
        return self._tables[target, oid]


def _row_pending(
    row: Sequence[Any], keys: list[_Key], pending: Mapping[_Key, set[tuple[str, ...]]]
) -> bool:
    for key in keys:
        text = tuple(_as_text(row[p]) for p in key.positions)
        if None not in text and text in pending[key]:
            return True
    return False


def _as_text(value: Any) -> str | None:
    """``value`` as PostgreSQL renders it with ``::text``, for the usual key types; else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str, UUID, Decimal)):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return None
