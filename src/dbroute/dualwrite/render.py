"""The journal backlog as a table: shared by ``dbroute journal status`` and the demo."""

from __future__ import annotations

from rich.table import Table

from dbroute.dualwrite.journal import status
from dbroute.router import Router
from dbroute.target import Target

__all__ = ["journal_table"]


def journal_table(router: Router) -> tuple[Table, int]:
    """Each database's backlog by table (what ``dbroute journal status`` prints) and its total."""
    table = Table("database", "kind", "table", "entries", "conflicts", "oldest", "last error")
    total = 0
    for target in Target:
        with router.engine(target).connect() as connection:
            for row in status(connection):
                total += row.entries
                table.add_row(
                    target.value,
                    row.kind,
                    f"{row.table_schema}.{row.table_name}",
                    str(row.entries),
                    str(row.conflicts),
                    row.oldest.isoformat(" ", "seconds"),
                    row.last_error or "",
                )
    return table, total
