"""Where shadow reads hook into SQLAlchemy: one Session event, two cursor events.

* ``after_begin`` on the router's Session class (so sync sessions and the sync
  session inside every ``AsyncSession`` alike) marks the connection of each
  session transaction with a :class:`TransactionState`. Only marked
  connections are shadowed: the router's engines used directly (admin tasks,
  validation) never are.
* ``before_cursor_execute`` sees every statement of a marked transaction, in
  the SQL text the driver receives: writes mark the transaction as written
  (its later reads are not shadowed), reads are checked and sampled.
* ``after_cursor_execute`` copies the sampled read's rows
  (:mod:`dbroute.shadow.capture`) and queues the shadow job. It never raises:
  the caller's query has succeeded and must return as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.interfaces import ExecutionContext
from sqlalchemy.orm import Session, SessionTransaction

from dbroute.shadow.capture import CaptureRefused, capture
from dbroute.shadow.job import OPT_OUT, ShadowJob
from dbroute.shadow.statement import StatementInfo, StatementKind, analyse
from dbroute.target import Target

if TYPE_CHECKING:
    from dbroute.shadow.experiment import ShadowReads

__all__ = ["MARK", "TransactionState", "install", "uninstall"]

log = logging.getLogger("dbroute.shadow")

#: Connection execution option carrying the :class:`TransactionState`.
MARK = "dbroute_shadow_transaction"
_STREAMING = ("stream_results", "yield_per")


class TransactionState:
    """One session transaction: its database, whether it wrote, the read in flight."""

    __slots__ = ("pending", "target", "written")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.written = False
        self.pending: tuple[Any, float, StatementInfo] | None = None


class _Hooks:
    def __init__(self, experiment: ShadowReads, info_target: str) -> None:
        self.experiment = experiment
        self.info_target = info_target

    def after_begin(
        self, session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        target = session.info.get(self.info_target)
        if isinstance(target, Target):
            connection.execution_options(**{MARK: TransactionState(target)})

    def before(
        self,
        _conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        options = context.execution_options if context is not None else None
        state: TransactionState | None = options.get(MARK) if options else None
        if state is None or options is None:
            return
        state.pending = None
        info = analyse(statement)
        kind = info.kind
        if kind is StatementKind.WRITE:
            state.written = True
            return
        if kind is StatementKind.CONTROL:
            return
        reason = _skip_reason(kind, state, options, executemany)
        if reason is not None:
            self.experiment.skipped(reason)
            return
        if not self.experiment.sampler.sampled(statement, parameters):
            return
        if not self.experiment.should_run(info):
            self.experiment.skipped("run_if")
            return
        state.pending = (cursor, time.perf_counter(), info)

    def after(
        self,
        _conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        _executemany: bool,
    ) -> None:
        options = context.execution_options if context is not None else None
        state: TransactionState | None = options.get(MARK) if options else None
        if state is None or options is None or state.pending is None:
            return
        read_cursor, started, info = state.pending
        state.pending = None
        if read_cursor is not cursor:
            return
        elapsed = time.perf_counter() - started
        experiment = self.experiment
        try:
            primary = capture(cursor, experiment.row_cap)
        except CaptureRefused as refused:
            experiment.skipped(refused.reason)
            return
        except Exception:  # the caller's result must survive whatever the copy hit
            log.exception("shadow read: could not copy the primary's rows; read not shadowed")
            experiment.skipped("capture_failed")
            return
        experiment.submit(
            ShadowJob(
                primary_target=state.target,
                info=info,
                sql=statement,
                parameters=dict(parameters) if isinstance(parameters, dict) else parameters,
                primary=primary,
                primary_seconds=elapsed,
                compare=options.get("dbroute_shadow_compare"),
                ignore=options.get("dbroute_shadow_ignore"),
            )
        )


def _skip_reason(
    kind: StatementKind, state: TransactionState, options: Any, executemany: bool
) -> str | None:
    if kind is not StatementKind.READ:
        return kind.value
    if options.get(OPT_OUT, True) is False:
        return "opted_out"
    if state.written:
        return "pending_writes"
    if executemany:
        return "executemany"
    if any(options.get(name) for name in _STREAMING):
        return "streaming"
    return None


_Listener = tuple[Any, str, Callable[..., Any]]


def install(
    experiment: ShadowReads, session_class: type[Session], engines: Iterable[Engine], info_target: str
) -> list[_Listener]:
    """Attach the hooks; returns what :func:`uninstall` removes."""
    hooks = _Hooks(experiment, info_target)
    listeners: list[_Listener] = [(session_class, "after_begin", hooks.after_begin)]
    for engine in engines:
        listeners.append((engine, "before_cursor_execute", hooks.before))
        listeners.append((engine, "after_cursor_execute", hooks.after))
    for target, name, function in listeners:
        event.listen(target, name, function)
    return listeners


def uninstall(listeners: Iterable[_Listener]) -> None:
    """Detach hooks attached by :func:`install`."""
    for target, name, function in listeners:
        if event.contains(target, name, function):
            event.remove(target, name, function)
