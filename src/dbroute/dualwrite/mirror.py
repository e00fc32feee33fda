"""The commit protocol of a dual-writing session (sync and asyncio alike).

Hooked once on the router's ``session_class``; an ``AsyncSession`` runs the
same sync Session inside a greenlet, so both get it:

1. ``before_commit``: flush, then :func:`~dbroute.dualwrite.capture.collect`
   the transaction's captured keys and row images from the primary, in the
   user's transaction (its row locks held, so no other writer of those rows
   can commit in between);
2. write them to the secondary in one autocommit statement that also records
   an ``intent`` entry per key there;
3. on failure, best-effort puts the keys back in the primary's journal (same
   transaction: committed with the write or not at all), strict raises
   :class:`~dbroute.errors.SecondaryWriteError` so nothing commits;
4. the primary commits; ``after_commit`` hands its transaction id to the
   secondary, which deletes the intent entries shortly (no round trip here).

If the primary's commit fails after step 2, the intent entries stay on the
secondary and replay copies the primary's truth back over those rows (it
deletes the rows the primary never committed).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from dbroute.dualwrite.apply import MirrorError, Secondary
from dbroute.dualwrite.capture import Changes, collect
from dbroute.dualwrite.conflicts import report_conflicts
from dbroute.dualwrite.journal import rejournal
from dbroute.errors import DualWriteNotSetUpError, SecondaryWriteError, WriteConflictError
from dbroute.router import INFO_TARGET, Router
from dbroute.target import Target
from dbroute.telemetry import (
    ATTR_ERROR_TYPE,
    DUALWRITE_ADDED_LATENCY,
    DUALWRITE_JOURNALED,
    DUALWRITE_MIRRORED,
    DUALWRITE_SECONDARY_ERRORS,
    target_attributes,
)

__all__ = ["DualWriter"]

log = logging.getLogger("dbroute.dualwrite")

_CONNECTION = "dbroute.dualwrite.connection"
_PENDING = "dbroute.dualwrite.pending"  # (secondary, xid) to confirm after the commit
# undefined_function, invalid_schema_name: what `dbroute setup` installs is missing.
_NOT_SET_UP = ("42883", "3F000")


class DualWriter:
    """Dual-write for one router: its secondaries and the session hooks."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._strict = router.settings.dual_write_mode == "strict"
        # Strict mode mirrors every transaction, whatever its size.
        self._max_rows = None if self._strict else router.settings.dual_write_max_rows
        self.secondaries = {t: Secondary(router.settings, t) for t in Target}

    def attach(self, session_class: type[Session]) -> None:
        """Hook the commit protocol on ``session_class`` (once per router)."""
        event.listen(session_class, "after_begin", self._after_begin)
        event.listen(session_class, "before_commit", self._before_commit)
        event.listen(session_class, "after_commit", self._after_commit)
        event.listen(session_class, "after_transaction_end", self._after_transaction_end)

    def dispose(self) -> None:
        """Close the secondaries' sync pools."""
        for secondary in self.secondaries.values():
            secondary.dispose()

    async def adispose(self) -> None:
        """Close the secondaries' asyncio pools (:meth:`dispose` closes the rest)."""
        for secondary in self.secondaries.values():
            await secondary.adispose()

    # --- hooks -------------------------------------------------------------------

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        # Only sessions that touched the database pay for dual-write at commit.
        session.info[_CONNECTION] = connection

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(_CONNECTION, None)
            session.info.pop(_PENDING, None)

    def _before_commit(self, session: Session) -> None:
        target: Target | None = session.info.get(INFO_TARGET)
        if target is None or session.in_nested_transaction():
            return
        if not self._router.routing_state.dual_write:
            return
        session.flush()  # before_commit runs before the commit's own final flush
        connection: Connection | None = session.info.get(_CONNECTION)
        if connection is None:  # the transaction never touched the database
            return
        started = time.perf_counter()
        changes = self._collect(connection, target)
        if not changes:
            return
        secondary = self.secondaries[target.other]
        attributes = target_attributes(target)
        if changes.payload is None:  # too large to mirror inline: replay copies it
            DUALWRITE_JOURNALED.add(changes.rows, attributes)
            log.info("dual-write: %d rows left to replay (over %s)", changes.rows, self._max_rows)
            return
        try:
            if connection.dialect.is_async:
                await_only(secondary.aapply(changes, target))
            else:
                secondary.apply(changes, target)
        except MirrorError as failure:
            DUALWRITE_SECONDARY_ERRORS.add(1, {**attributes, ATTR_ERROR_TYPE: failure.error_type})
            report_conflicts(failure.conflicts)
            self._failed(connection, target, changes, failure)
        else:
            DUALWRITE_MIRRORED.add(changes.rows, attributes)
            session.info[_PENDING] = (secondary, changes.xid)
        DUALWRITE_ADDED_LATENCY.record(time.perf_counter() - started, attributes)

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop(_PENDING, None)
        if pending is not None:
            secondary, xid = pending
            secondary.confirm(xid)

    # --- steps -------------------------------------------------------------------

    def _collect(self, connection: Connection, target: Target) -> Changes:
        try:
            return collect(connection, self._max_rows)
        except psycopg.Error as exc:
            if exc.sqlstate in _NOT_SET_UP:
                raise DualWriteNotSetUpError(
                    f"dual-write is on but {target.value} is not set up for it: run "
                    "`dbroute setup` (or router.setup()) once before enabling dual-write"
                ) from None
            raise

    def _failed(
        self, connection: Connection, target: Target, changes: Changes, failure: MirrorError
    ) -> None:
        secondary = target.other.value
        if self._strict:
            message = (
                f"dual-write (strict): {changes.rows} rows could not be written to {secondary} "
                f"({failure.message}); nothing was committed, roll back and retry"
            )
            if failure.conflicts:
                raise WriteConflictError(message, failure.conflicts)
            raise SecondaryWriteError(message)
        conflicts: Any = [c.as_json() for c in failure.conflicts] if failure.conflicts else None
        payload = changes.payload or "[]"  # never None here: too-large changes are not mirrored
        rejournal(connection, payload, f"{secondary}: {failure.message}", conflicts)
        DUALWRITE_JOURNALED.add(changes.rows, target_attributes(target))
