"""Where shadow reads hook into SQLAlchemy: the dialect's execute, for routed sessions.

Two kinds of events, both cheap on the caller's path:

* Session ``after_begin`` (once per transaction, on the router's Session class,
  which also serves the sync session inside every ``AsyncSession``) marks the
  transaction's Connection as a routed session's, with its target.
* Dialect ``do_execute`` and ``do_execute_no_params``, on the router's engines
  (sync and asyncio), see every statement SQLAlchemy sends to the driver:
  ``select()``, ORM queries, ``text()``, ``session.get()``, lazy loads, and
  ``session.connection().execute()`` alike. In a routed transaction, a write
  marks the transaction written; a sampled read is executed here (the event
  may run the cursor itself), then libpq's result is taken off the DBAPI
  cursor (:func:`~dbroute.shadow.capture.take`) and queued for the worker
  process; nothing is copied or decoded here. ``do_executemany`` never
  shadows: it marks writes, and counts a sampled read as skipped. The
  caller gets the result SQLAlchemy builds from that cursor, as without
  shadowing. Reads of a written transaction are not shadowed: they
  see their own writes.

Why the dialect and not the Session's ``do_orm_execute`` (the first design):
any ``do_orm_execute`` listener makes SQLAlchemy build an execution state
for every session statement, sampled or not, and running the statement from
it (``invoke_statement``) costs more again; a dialect event is one more call
where the statement is sent anyway. An engine's ``after_cursor_execute``
would be no cheaper: engine events make every new Connection join the
engine's listeners (+28 to +35 µs a read, measured with a listener doing
nothing). See docs/shadow-reads.md#cost for the figures.

Not covered: the router's engines used directly, outside a session (no
session transaction marks them). Nothing here raises into the caller: a
failure counts as a skipped read, and a statement not yet run is left to
SQLAlchemy.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.interfaces import ExecutionContext
from sqlalchemy.orm import Session, SessionTransaction

from dbroute.shadow.capture import CaptureRefused, take
from dbroute.shadow.job import OPT_COMPARE, OPT_IGNORE, OPT_OUT
from dbroute.shadow.statement import StatementKind, analyse
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.shadow.experiment import ShadowReads

__all__ = ["ROUTED", "WRITTEN", "install", "uninstall"]

log = logging.getLogger("dbroute.shadow")

#: ``Connection.info`` key: ``(transaction, target)`` of the routed session using it.
ROUTED = "dbroute.shadow.routed"
#: ``Connection.info`` key: the transaction that wrote.
WRITTEN = "dbroute.shadow.written"
# The statement was not shadowed: SQLAlchemy runs it, as if there were no hook.
_NOT_RUN = False


class _Hooks:
    def __init__(self, experiment: ShadowReads, info_target: str) -> None:
        self.experiment = experiment
        self.info_target = info_target

    def after_begin(
        self, session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        target = session.info.get(self.info_target)
        if isinstance(target, Target):
            # Marks by transaction object: the next one, on this pooled
            # connection or any other, is not a routed session's until marked.
            connection.info[ROUTED] = (connection.get_transaction(), target)

    def do_executemany(
        self, _cursor: Any, statement: str, parameters: Any, context: ExecutionContext
    ) -> bool:
        # Judged, never shadowed: one statement, many parameter sets, no one answer.
        try:
            if (routed := _routed(context)) is not None:
                kind = analyse(statement).kind
                if kind is StatementKind.WRITE:
                    _mark_written(routed)
                elif kind is StatementKind.READ and self.experiment.sampler.sampled(
                    statement, parameters[0] if parameters else None
                ):
                    self.experiment.skipped("executemany")
        except Exception:  # the caller's statement must run whatever the hook hit
            log.exception("shadow read: could not judge a statement")
        return _NOT_RUN

    def do_execute(
        self, cursor: Any, statement: str, parameters: Any, context: ExecutionContext
    ) -> bool:
        target = self._target(statement, parameters, context)
        if target is None:
            return _NOT_RUN
        run = functools.partial(context.dialect.do_execute, cursor, statement, parameters, context)
        return self._run_and_take(run, cursor, statement, parameters, context, target)

    def do_execute_no_params(self, cursor: Any, statement: str, context: ExecutionContext) -> bool:
        # None, not SQLAlchemy's empty parameters: the shadow must not format the
        # text either (a literal % stays as it is).
        target = self._target(statement, None, context)
        if target is None:
            return _NOT_RUN
        run = functools.partial(context.dialect.do_execute_no_params, cursor, statement, context)
        return self._run_and_take(run, cursor, statement, None, context, target)

    def _target(self, statement: str, parameters: Any, context: ExecutionContext) -> Target | None:
        try:
            return self._plan(statement, parameters, context)
        except Exception:  # the caller's statement must run whatever the hook hit
            log.exception("shadow read: could not judge a statement; read not shadowed")
            self.experiment.skipped("hook_failed")
            return None

    def _run_and_take(
        self,
        run: Callable[[], None],
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext,
        target: Target,
    ) -> bool:
        # The dialect's own execute, timed: the caller's errors reach SQLAlchemy
        # unchanged, and the result stays on the cursor for SQLAlchemy to read.
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        try:
            self._submit(cursor, statement, parameters, context, target, elapsed)
        except CaptureRefused as refused:
            self.experiment.skipped(refused.reason)
        except Exception:  # the caller's result must survive whatever the shadow hit
            log.exception("shadow read: could not prepare the shadow; read not shadowed")
            self.experiment.skipped("hook_failed")
        return True  # executed: SQLAlchemy does not run it again

    def _plan(self, statement: str, parameters: Any, context: ExecutionContext) -> Target | None:
        """The target whose read ``statement`` is to be shadowed, else ``None``."""
        routed = _routed(context)
        if routed is None:
            return None  # not a routed session's transaction: leave it alone
        info = analyse(statement)  # cached: SQLAlchemy renders the same texts again
        kind = info.kind
        if kind is StatementKind.WRITE:
            _mark_written(routed)
            return None
        if kind is StatementKind.CONTROL:
            return None
        experiment = self.experiment
        if not experiment.sampler.sampled(statement, parameters):
            return None
        target, transaction, marks = routed
        written = marks.get(WRITTEN) is transaction
        reason = _skip_reason(kind, written, context.execution_options)
        if reason is not None:
            experiment.skipped(reason)
            return None
        if not experiment.should_run(info):
            experiment.skipped("run_if")
            return None
        return target

    def _submit(
        self,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext,
        target: Target,
        elapsed: float,
    ) -> None:
        experiment = self.experiment
        primary = take(cursor, experiment.row_cap)
        options = context.execution_options
        experiment.submit(
            target,
            statement,
            _plain(parameters),
            primary,
            elapsed,
            options.get(OPT_COMPARE),
            options.get(OPT_IGNORE),
        )


#: A statement's routed-session transaction: its target, the transaction, and the
#: Connection's ``info`` where its marks are kept. A plain tuple: built for every statement.
_Routed = tuple[Target, Any, dict[str, Any]]


def _routed(context: ExecutionContext) -> _Routed | None:
    """The routed session's transaction running this statement, if it is one's."""
    connection = context.root_connection
    transaction = connection.get_transaction()
    if transaction is None:  # no session's (nor the dialect's first connection, which has no info)
        return None
    marks = connection.info  # looked up once: a chain of properties down to the pool's record
    marked = marks.get(ROUTED)
    if marked is None or marked[0] is not transaction:
        return None
    return marked[1], transaction, marks


def _mark_written(routed: _Routed) -> None:
    _, transaction, marks = routed
    marks[WRITTEN] = transaction


def _plain(parameters: Any) -> Any:
    # SQLAlchemy hands the driver an immutabledict when a statement has none: the
    # worker gets plain containers only (job.snapshot).
    if type(parameters) is not dict and isinstance(parameters, Mapping):  # dicts: no ABC check
        return dict(parameters)
    return parameters


def _skip_reason(kind: StatementKind, written: bool, options: Mapping[str, Any]) -> str | None:
    if kind is not StatementKind.READ:
        return kind.value
    if options.get(OPT_OUT, True) is False:
        return "opted_out"
    if written:
        return "pending_writes"
    if options.get("stream_results") or options.get("yield_per"):
        return "streaming"
    return None


_Listener = tuple[Any, str, Callable[..., Any]]


def install(
    experiment: ShadowReads,
    session_class: type[Session],
    engines: Iterable[Engine],
    info_target: str,
) -> list[_Listener]:
    """Attach the hooks to ``session_class`` and ``engines``; :func:`uninstall` removes them."""
    hooks = _Hooks(experiment, info_target)
    listeners: list[_Listener] = [(session_class, "after_begin", hooks.after_begin)]
    for engine in engines:
        listeners += [
            (engine, "do_execute", hooks.do_execute),
            (engine, "do_execute_no_params", hooks.do_execute_no_params),
            (engine, "do_executemany", hooks.do_executemany),
        ]
    for target, name, function in listeners:
        event.listen(target, name, function)
    return listeners


def uninstall(listeners: Iterable[_Listener]) -> None:
    """Detach hooks attached by :func:`install`."""
    for target, name, function in listeners:
        if event.contains(target, name, function):
            event.remove(target, name, function)
