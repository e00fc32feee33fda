"""Where shadow reads hook into SQLAlchemy: Session events only, on the router's Session class.

The router's Session class serves sync sessions and the sync session inside
every ``AsyncSession`` alike, so one set of hooks covers both:

* ``do_orm_execute`` wraps every ``session.execute()`` (``select()``, ORM
  queries, ``text()``, ``session.get()``, lazy loads): it runs the statement
  (``invoke_statement``), then reads the SQL text the driver received from the
  result's execution context, decides from that text, and for a sampled read
  takes libpq's result off the DBAPI cursor (:func:`~dbroute.shadow.capture.take`)
  and queues it for the worker process; nothing is copied here. The caller
  gets the very result object SQLAlchemy produced.
* ``after_flush`` and non-read statements mark the session's (outermost)
  transaction as written; the next transaction starts clean.
  Reads of a written transaction are not shadowed: they see their own writes.

Not covered: statements run on ``session.connection().execute()`` or on the
router's engines directly (they bypass ``do_orm_execute``); their writes are
not seen either, so do not mix them with shadowed reads in one transaction.
Nothing here raises into the caller: a failure counts as a skipped read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.elements import TextClause

from dbroute.shadow.capture import CaptureRefused, take
from dbroute.shadow.job import OPT_COMPARE, OPT_IGNORE, OPT_OUT
from dbroute.shadow.statement import StatementKind, analyse
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.shadow.experiment import ShadowReads

__all__ = ["WRITTEN", "install", "uninstall"]

log = logging.getLogger("dbroute.shadow")

#: ``Session.info`` key: the outermost transaction that wrote.
WRITTEN = "dbroute.shadow.written"


class _Plan(Enum):
    SKIP = "skip"  # not sampled, or never shadowed: no work at all
    SHADOW = "shadow"  # sampled: run, check the SQL text, copy the rows
    DECIDE_AFTER = "decide_after"  # run, then decide from the SQL text (seeded sampling)
    WRITE = "write"  # run, then mark the transaction written


class _Hooks:
    def __init__(self, experiment: ShadowReads, info_target: str) -> None:
        self.experiment = experiment
        self.info_target = info_target

    def after_flush(self, session: Session, _flush_context: UOWTransaction) -> None:
        _mark_written(session)

    def do_orm_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        session = state.session
        target = session.info.get(self.info_target)
        if not isinstance(target, Target):
            return None  # not a routed session: leave it alone
        plan = self._plan(state)
        if plan is _Plan.SKIP:
            return None  # SQLAlchemy runs the statement as if there were no hook
        started = time.perf_counter()
        result = state.invoke_statement()
        elapsed = time.perf_counter() - started
        if plan is _Plan.WRITE:  # after running: a first statement begins the transaction
            _mark_written(session)
            return result
        try:
            self._consider(session, state, result, target, elapsed, plan is _Plan.SHADOW)
        except Exception:  # the caller's result must survive whatever the shadow hit
            log.exception("shadow read: could not prepare the shadow; read not shadowed")
            self.experiment.skipped("hook_failed")
        return result

    def _plan(self, state: ORMExecuteState) -> _Plan:
        """What can be decided before the statement runs."""
        if state.is_select:  # the common case first
            return self._sample()
        statement = state.statement
        if isinstance(statement, TextClause):
            kind = analyse(statement.text).kind
            if kind is StatementKind.READ:
                return self._sample()
            if kind is StatementKind.WRITE:
                return _Plan.WRITE
            if kind is not StatementKind.CONTROL:
                self.experiment.skipped(kind.value)
            return _Plan.SKIP
        if state.is_insert or state.is_update or state.is_delete:
            return _Plan.WRITE
        return _Plan.DECIDE_AFTER  # DDL, functions...: only the compiled text tells

    def _sample(self) -> _Plan:
        early = self.experiment.sampler.decide_early()
        if early is None:
            return _Plan.DECIDE_AFTER
        return _Plan.SHADOW if early else _Plan.SKIP

    def _consider(
        self,
        session: Session,
        state: ORMExecuteState,
        result: Result[Any],
        target: Target,
        elapsed: float,
        sampled: bool,
    ) -> None:
        raw = result if isinstance(result, CursorResult) else getattr(result, "raw", None)
        if not isinstance(raw, CursorResult):
            self.experiment.skipped("unsupported_result")
            return
        context = raw.context
        sql: str = context.statement
        info = analyse(sql)
        kind = info.kind
        if kind is StatementKind.WRITE:
            _mark_written(session)
            return
        if kind is StatementKind.CONTROL:
            return
        options = state.execution_options
        reason = _skip_reason(kind, session, options, state.is_executemany)
        if reason is not None:
            self.experiment.skipped(reason)
            return
        parameters = context.parameters[0] if context.parameters else None
        experiment = self.experiment
        if not sampled and not experiment.sampler.sampled(sql, parameters):
            return
        if not experiment.should_run(info):
            experiment.skipped("run_if")
            return
        try:
            primary = take(raw.cursor, experiment.row_cap)
        except CaptureRefused as refused:
            experiment.skipped(refused.reason)
            return
        experiment.submit(
            target,
            sql,
            parameters,
            primary,
            elapsed,
            options.get(OPT_COMPARE),
            options.get(OPT_IGNORE),
        )


def _mark_written(session: Session) -> None:
    # The flag names the transaction that wrote: the next transaction, a new
    # object, is clean without an event at every transaction end.
    session.info[WRITTEN] = session.get_transaction()


def _written(session: Session) -> bool:
    marked = session.info.get(WRITTEN)
    return marked is not None and marked is session.get_transaction()


def _skip_reason(
    kind: StatementKind, session: Session, options: Any, executemany: bool
) -> str | None:
    if kind is not StatementKind.READ:
        return kind.value
    if options.get(OPT_OUT, True) is False:
        return "opted_out"
    if _written(session):
        return "pending_writes"
    if executemany:
        return "executemany"
    if options.get("stream_results") or options.get("yield_per"):
        return "streaming"
    return None


_Listener = tuple[Any, str, Callable[..., Any]]


def install(
    experiment: ShadowReads, session_class: type[Session], info_target: str
) -> list[_Listener]:
    """Attach the hooks to ``session_class``; returns what :func:`uninstall` removes."""
    hooks = _Hooks(experiment, info_target)
    listeners: list[_Listener] = [
        (session_class, "do_orm_execute", hooks.do_orm_execute),
        (session_class, "after_flush", hooks.after_flush),
    ]
    for target, name, function in listeners:
        event.listen(target, name, function)
    return listeners


def uninstall(listeners: Iterable[_Listener]) -> None:
    """Detach hooks attached by :func:`install`."""
    for target, name, function in listeners:
        if event.contains(target, name, function):
            event.remove(target, name, function)
