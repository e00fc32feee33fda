"""Where shadow reads hook into SQLAlchemy: Session events only, on the router's Session class.

The router's Session class serves sync sessions and the sync session inside
every ``AsyncSession`` alike, so one set of hooks covers both:

* ``do_orm_execute`` wraps every ``session.execute()`` (``select()``, ORM
  queries, ``text()``, ``session.get()``, lazy loads): it runs the statement
  (``invoke_statement``), then reads the SQL text the driver received from the
  result's execution context, decides from that text, and for a sampled read
  copies the rows off the still unread DBAPI cursor
  (:mod:`dbroute.shadow.capture`) and queues the shadow job. The caller gets
  the very result object SQLAlchemy produced.
* ``after_flush`` and non-read statements mark the session's transaction as
  written; ``after_transaction_end`` of the outermost transaction clears it.
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
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction
from sqlalchemy.sql.elements import TextClause

from dbroute.shadow.capture import CaptureRefused, capture
from dbroute.shadow.job import OPT_COMPARE, OPT_IGNORE, OPT_OUT, ShadowJob
from dbroute.shadow.statement import StatementKind, analyse
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.shadow.experiment import ShadowReads

__all__ = ["WRITTEN", "install", "uninstall"]

log = logging.getLogger("dbroute.shadow")

#: ``Session.info`` key: set while the session's transaction has written.
WRITTEN = "dbroute.shadow.written"
_STREAMING = ("stream_results", "yield_per")


class _Hooks:
    def __init__(self, experiment: ShadowReads, info_target: str) -> None:
        self.experiment = experiment
        self.info_target = info_target

    def after_flush(self, session: Session, _flush_context: UOWTransaction) -> None:
        session.info[WRITTEN] = True

    def after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(WRITTEN, None)

    def do_orm_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        session = state.session
        target = session.info.get(self.info_target)
        if not isinstance(target, Target):
            return None  # not a routed session: leave it alone
        sampled = self._before(session, state)
        if sampled is False:
            return None  # SQLAlchemy runs the statement as if there were no hook
        started = time.perf_counter()
        result = state.invoke_statement()
        elapsed = time.perf_counter() - started
        try:
            self._consider(session, state, result, target, elapsed, sampled)
        except Exception:  # the caller's result must survive whatever the shadow hit
            log.exception("shadow read: could not prepare the shadow; read not shadowed")
            self.experiment.skipped("hook_failed")
        return result

    def _before(self, session: Session, state: ORMExecuteState) -> bool | None:
        """Decide before running what can be decided: ``False`` means no shadow work at all.

        ``None``: run it and decide from the SQL text the driver receives.
        """
        if state.is_insert or state.is_update or state.is_delete:
            session.info[WRITTEN] = True
            return False
        statement = state.statement
        if isinstance(statement, TextClause):
            kind = analyse(statement.text).kind
            if kind is StatementKind.WRITE:
                session.info[WRITTEN] = True
                return False
            if kind is not StatementKind.READ:
                if kind is not StatementKind.CONTROL:
                    self.experiment.skipped(kind.value)
                return False
        elif not state.is_select:
            return None  # DDL, functions...: only the compiled text tells
        return self.experiment.sampler.decide_early()

    def _consider(
        self,
        session: Session,
        state: ORMExecuteState,
        result: Result[Any],
        target: Target,
        elapsed: float,
        sampled: bool | None,
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
            session.info[WRITTEN] = True
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
        if sampled is None:
            sampled = experiment.sampler.sampled(sql, parameters)
        if not sampled:
            return
        if not experiment.should_run(info):
            experiment.skipped("run_if")
            return
        try:
            primary = capture(raw.cursor, experiment.row_cap)
        except CaptureRefused as refused:
            experiment.skipped(refused.reason)
            return
        experiment.submit(
            ShadowJob(
                primary_target=target,
                info=info,
                sql=sql,
                parameters=dict(parameters) if isinstance(parameters, dict) else parameters,
                primary=primary,
                primary_seconds=elapsed,
                compare=options.get(OPT_COMPARE),
                ignore=options.get(OPT_IGNORE),
            )
        )


def _skip_reason(
    kind: StatementKind, session: Session, options: Any, executemany: bool
) -> str | None:
    if kind is not StatementKind.READ:
        return kind.value
    if options.get(OPT_OUT, True) is False:
        return "opted_out"
    if session.info.get(WRITTEN):
        return "pending_writes"
    if executemany:
        return "executemany"
    if any(options.get(name) for name in _STREAMING):
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
        (session_class, "after_transaction_end", hooks.after_transaction_end),
    ]
    for target, name, function in listeners:
        event.listen(target, name, function)
    return listeners


def uninstall(listeners: Iterable[_Listener]) -> None:
    """Detach hooks attached by :func:`install`."""
    for target, name, function in listeners:
        if event.contains(target, name, function):
            event.remove(target, name, function)
