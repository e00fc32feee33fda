"""The commit protocol of a dual-writing session (sync and asyncio alike).

Hooked once on the router's ``session_class``; an ``AsyncSession`` runs the
same sync Session inside a greenlet, so both get it:

1. ``before_commit``: flush, then :func:`~dbroute.dualwrite.capture.collect`
   the transaction's captured keys and row images from the primary, in the
   user's transaction (its row locks held, so no other writer of those rows
   can commit in between);
2. write them to the secondary in one autocommit statement that also records
   the transaction's ``intent`` row there. When the capture trigger already sent
   the images as a notice (:mod:`dbroute.dualwrite.notices`), the mirror is
   written from it at once while ``collect()`` runs meanwhile, as the check;
   a check that fails journals the keys sent and collected (same
   transaction), for replay;
3. on failure, best-effort puts the keys back in the primary's journal (same
   transaction: committed with the write or not at all), strict raises
   :class:`~dbroute.errors.SecondaryWriteError` so nothing commits;
4. the primary commits; ``after_commit`` hands its transaction id to the
   secondary, which deletes the intent row shortly (no round trip here).

If the primary's commit fails after step 2, the intent row stays on the
secondary; replay sees that its transaction aborted and copies the primary's
truth back over those rows (it deletes the rows the primary never committed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from dbroute.dualwrite.apply import MirrorError, Secondary
from dbroute.dualwrite.capture import Changes, collect
from dbroute.dualwrite.conflicts import report_conflicts
from dbroute.dualwrite.journal import rejournal
from dbroute.dualwrite.notices import PendingCollect, install, notices_of
from dbroute.errors import DualWriteNotSetUpError, SecondaryWriteError, WriteConflictError
from dbroute.poolers import transaction_pooler
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
        #: Databases whose connections ask for notices of row images (notices.py):
        #: best-effort mode with dual-write on from the start (a router that waits
        #: for its phase would pay for images nobody uses), and never behind a
        #: transaction pooler, where the switch would reach other clients.
        settings = router.settings
        self.notices = frozenset(
            t
            for t in Target
            if settings.dual_write
            and settings.dual_write_notices
            and self._max_rows is not None
            and transaction_pooler(settings.url(t)) is None
        )

    def attach(self, session_class: type[Session]) -> None:
        """Hook the commit protocol on ``session_class`` (once per router)."""
        limit = self._max_rows
        if limit is not None:  # None in strict mode, which asks for no notices
            for target in self.notices:
                install(self._router.engine(target), limit)
                install(self._router.async_engine(target).sync_engine, limit)
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
        notices = notices_of(connection)
        if notices is not None:
            notices.clear()

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
        notices = notices_of(connection)
        sent = notices.single() if notices is not None else None
        if sent is not None:
            self._mirror_sent(session, connection, target, sent)
        elif not self._collect_and_mirror(session, connection, target):
            return  # nothing written to the secondary: no latency added by it
        DUALWRITE_ADDED_LATENCY.record(time.perf_counter() - started, target_attributes(target))

    def _collect_and_mirror(self, session: Session, connection: Connection, target: Target) -> bool:
        """Collect, then mirror; whether the secondary was written to (or tried)."""
        changes = self._collect(connection, target)
        if not changes:
            return False
        if changes.payload is None:  # too large to mirror inline: replay copies it
            DUALWRITE_JOURNALED.add(changes.rows, target_attributes(target))
            log.info("dual-write: %d rows left to replay (over %s)", changes.rows, self._max_rows)
            return False
        failure = self._mirror(connection, target, changes)
        if failure is not None:
            self._failed(connection, target, changes, failure)
        else:
            self._mirrored(session, target, changes)
        return True

    def _mirror_sent(
        self, session: Session, connection: Connection, target: Target, sent: Changes
    ) -> None:
        # The images the capture trigger sent go to the secondary at once;
        # collect() runs on the primary meanwhile and says whether they are all.
        with _set_up(target):
            pending = PendingCollect(connection, self._max_rows)
        try:
            failure = self._mirror(connection, target, sent)
        finally:
            with _set_up(target):
                changes = pending.result()
        if failure is not None:
            if changes:  # the keys the transaction really changed go back to the journal
                self._failed(connection, target, changes, failure)
            return
        if _same(sent, changes):
            self._mirrored(session, target, changes)
            return
        # A savepoint rolled back after its images were sent, or notices went
        # missing: what the secondary got may not be what commits. The keys
        # sent and the transaction's go back to the journal (a payload too
        # large to collect left its keys there), and replay copies the primary's
        # rows over them after the commit.
        groups = json.loads(sent.payload or "[]") + json.loads(changes.payload or "[]")
        error = "mirrored images differed from the commit"
        journaled = rejournal(connection, json.dumps(groups), error)
        DUALWRITE_JOURNALED.add(journaled, target_attributes(target))
        self._confirm_after_commit(session, target, sent.xid)
        log.info(
            "dual-write: the images sent (%d keys) differ from the transaction's (%d keys, "
            "%d notices): left to replay",
            sent.rows,
            changes.rows,
            changes.notices,
        )

    def _mirror(
        self, connection: Connection, target: Target, changes: Changes
    ) -> MirrorError | None:
        """Write ``changes`` to the secondary; the failure, counted, or ``None``."""
        secondary = self.secondaries[target.other]
        try:
            if connection.dialect.is_async:
                await_only(secondary.aapply(changes, target))
            else:
                secondary.apply(changes, target)
        except MirrorError as failure:
            attributes = {**target_attributes(target), ATTR_ERROR_TYPE: failure.error_type}
            DUALWRITE_SECONDARY_ERRORS.add(1, attributes)
            report_conflicts(failure.conflicts)
            return failure
        return None

    def _mirrored(self, session: Session, target: Target, changes: Changes) -> None:
        DUALWRITE_MIRRORED.add(changes.rows, target_attributes(target))
        self._confirm_after_commit(session, target, changes.xid)

    def _confirm_after_commit(self, session: Session, target: Target, xid: str | None) -> None:
        # Once the primary committed, the intent row on the secondary may go.
        session.info[_PENDING] = (self.secondaries[target.other], xid)

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop(_PENDING, None)
        if pending is not None:
            secondary, xid = pending
            secondary.confirm(xid)

    # --- steps -------------------------------------------------------------------

    def _collect(self, connection: Connection, target: Target) -> Changes:
        with _set_up(target):
            return collect(connection, self._max_rows)

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


@contextmanager
def _set_up(target: Target) -> Iterator[None]:
    """Turn ``collect()``'s error for a database without the setup into a clear one."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate in _NOT_SET_UP:
            raise DualWriteNotSetUpError(
                f"dual-write is on but {target.value} is not set up for it: run "
                "`dbroute setup` (or router.setup()) once before enabling dual-write"
            ) from None
        raise


def _same(sent: Changes, changes: Changes) -> bool:
    """Whether the images sent are exactly the transaction's (see notices.py)."""
    return (
        changes.notices == 1
        and changes.payload is not None
        and (changes.rows, changes.xid, changes.table) == (sent.rows, sent.xid, sent.table)
    )
