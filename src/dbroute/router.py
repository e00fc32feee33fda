"""The Router: one engine per database, one session per key, on the key's database."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from dbroute.bucketing import check_key, hash_bucket
from dbroute.forking import fresh_pool_after_fork
from dbroute.routing_state import RoutingState
from dbroute.settings import PoolSettings, RoutingSettings, safe_url
from dbroute.target import Reason, Target
from dbroute.telemetry import ROUTING_DECISIONS, decision_attributes

if TYPE_CHECKING:
    from dbroute.dualwrite.mirror import DualWriter
    from dbroute.dualwrite.replay import ReplayReport
    from dbroute.dualwrite.setup import SetupReport
    from dbroute.phases.poller import PhasePoller
    from dbroute.shadow import ShadowReads, ShadowReport

__all__ = ["INFO_KEY", "INFO_TARGET", "Router", "RoutingDecision"]

log = logging.getLogger("dbroute")

#: ``Session.info`` keys under which every routed session records its key and target.
INFO_KEY = "dbroute.key"
INFO_TARGET = "dbroute.target"


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a key goes and why: what ``dbroute bucket KEY`` prints."""

    key: str
    bucket: int
    target: Target
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A routing result with its metric attributes, built once: the hot path only returns it."""

    target: Target
    reason: Reason
    attributes: Mapping[str, str]


def _outcome(target: Target, reason: Reason) -> _Outcome:
    return _Outcome(target, reason, decision_attributes(target, reason))


_KILLED = _outcome(Target.NEON, Reason.KILL_SWITCH)
_FORCED_RDS = _outcome(Target.RDS, Reason.FORCE)
_FORCED_NEON = _outcome(Target.NEON, Reason.FORCE)
_HASHED_RDS = _outcome(Target.RDS, Reason.HASH)
_HASHED_NEON = _outcome(Target.NEON, Reason.HASH)


class Router:
    """Routes each key to Neon or RDS and hands out SQLAlchemy sessions bound there.

    Build one per process and share it: it owns a connection pool per database
    (sync and asyncio) and is safe to use from many threads and tasks::

        router = Router.from_env()
        with router.session("user-42") as session:
            session.execute(text("select 1"))

    A key's target depends only on the key and the settings (salt, percentage,
    overrides, kill switch): see ``docs/routing.md``.
    """

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings
        # Every routing input in one immutable snapshot, swapped whole at runtime.
        self._state = RoutingState.from_settings(settings)
        # A Session subclass of this router's own: feature modules (dual-write,
        # shadow reads) attach their events to it once, and both the sync and the
        # asyncio sessions (which wrap a sync Session) get them; other routers in
        # the same process are unaffected.
        self.session_class: type[Session] = type("RoutedSession", (Session,), {})
        self._engines = {t: _engine(settings, t) for t in Target}
        self._async_engines = {t: _async_engine(settings, t) for t in Target}
        self._makers = {
            t: sessionmaker(self._engines[t], class_=self.session_class) for t in Target
        }
        self._async_makers = {
            t: async_sessionmaker(self._async_engines[t], sync_session_class=self.session_class)
            for t in Target
        }
        # --- features switched on by settings attach to session_class here; they
        # are imported lazily so the core routes without loading what it does not use.
        # Dual-write hooks commits when routing_state.dual_write is on, which a
        # followed phase may switch at runtime.
        self._dual_writer: DualWriter | None = None
        if settings.dual_write or settings.phase_poll_seconds > 0:
            from dbroute.dualwrite.mirror import DualWriter

            self._dual_writer = DualWriter(self)
            self._dual_writer.attach(self.session_class)
        # Shadow reads: sampled session reads re-run on the other database, in the
        # background (docs/shadow-reads.md).
        self._shadow: ShadowReads | None = None
        if settings.shadow_read_percent > 0:
            from dbroute.shadow import ShadowReads

            self._shadow = ShadowReads.attach(self)
        # The phase poller starts last: its thread must not outlive a failed __init__.
        self._phase_poller: PhasePoller | None = None
        if settings.phase_poll_seconds > 0 and settings.phase is None:
            from dbroute.phases.poller import PhasePoller

            self._phase_poller = PhasePoller.start(self, settings.phase_poll_seconds)

        log.info(
            "dbroute router ready: rds_percent=%s kill_switch=%s neon=%s rds=%s",
            settings.rds_percent,
            settings.kill_switch,
            safe_url(settings.url(Target.NEON)),
            safe_url(settings.url(Target.RDS)),
        )

    @classmethod
    def from_settings(cls, settings: RoutingSettings) -> Self:
        """A router for ``settings``."""
        return cls(settings)

    @classmethod
    def from_env(cls) -> Self:
        """A router configured by the ``DBROUTE_*`` environment variables."""
        return cls(RoutingSettings())

    # --- routing ---------------------------------------------------------------

    def target_for(self, key: str | int) -> Target:
        """The database ``key`` is routed to. Raises ``TypeError``/``ValueError`` for a bad key."""
        # The common case (a non-empty str) skips check_key's call: this is the hot path.
        outcome = self._route(key if type(key) is str and key else check_key(key))
        ROUTING_DECISIONS.add(1, outcome.attributes)
        return outcome.target

    def decide(self, key: str | int) -> RoutingDecision:
        """Like :meth:`target_for`, with the bucket and the reason (for support tooling)."""
        canonical = check_key(key)
        outcome = self._route(canonical)
        return RoutingDecision(
            canonical, hash_bucket(canonical, self._state.salt), outcome.target, outcome.reason
        )

    def _route(self, key: str) -> _Outcome:
        # Precedence: kill switch, then per-key overrides, then the hash. One
        # snapshot per decision: a concurrent phase change swaps it whole.
        state = self._state
        if state.kill_switch:
            return _KILLED
        if key in state.force_rds:
            return _FORCED_RDS
        if key in state.force_neon:
            return _FORCED_NEON
        if hash_bucket(key, state.salt) < state.threshold:
            return _HASHED_RDS
        return _HASHED_NEON

    @property
    def routing_state(self) -> RoutingState:
        """The routing inputs in force now: percentage, overrides, dual-write, phase."""
        return self._state

    def set_routing_state(self, state: RoutingState) -> None:
        """Swap the routing inputs at once (the phase poller does this on a phase change)."""
        self._state = state

    # --- sessions --------------------------------------------------------------

    def session(self, key: str | int, **options: Any) -> Session:
        """A new :class:`~sqlalchemy.orm.Session` bound to ``key``'s database.

        ``options`` go to the Session (``autoflush``, ``expire_on_commit``...).
        ``session.info["dbroute.key"]`` and ``["dbroute.target"]`` record the route.
        """
        target = self.target_for(key)
        return self._makers[target](info={INFO_KEY: key, INFO_TARGET: target}, **options)

    def async_session(self, key: str | int, **options: Any) -> AsyncSession:
        """A new :class:`~sqlalchemy.ext.asyncio.AsyncSession` bound to ``key``'s database."""
        target = self.target_for(key)
        return self._async_makers[target](info={INFO_KEY: key, INFO_TARGET: target}, **options)

    def engine(self, target: Target) -> Engine:
        """The sync engine of ``target`` (migrations, admin tasks)."""
        return self._engines[Target(target)]

    def async_engine(self, target: Target) -> AsyncEngine:
        """The asyncio engine of ``target``."""
        return self._async_engines[Target(target)]

    # --- dual-write (docs/dual-write.md) ----------------------------------------

    def setup(self, exclude: Iterable[str] = ()) -> list[SetupReport]:
        """Prepare both databases for dual-write (``dbroute setup``); idempotent."""
        from dbroute.dualwrite.setup import setup

        return setup(self._engines, exclude)

    def teardown(self, *, force: bool = False) -> None:
        """Remove what :meth:`setup` installed (``dbroute teardown``)."""
        from dbroute.dualwrite.setup import teardown

        teardown(self._engines, force=force)

    def replay(self, **options: Any) -> ReplayReport:
        """Copy journaled rows to the other database (``dbroute replay``); see its options."""
        from dbroute.dualwrite.replay import replay

        if self._dual_writer is not None:
            # This process's own writers' intents go first: replay need not copy them again.
            for secondary in self._dual_writer.secondaries.values():
                secondary.flush_confirmed()
        return replay(self._engines, **options)

    # --- shadow reads ----------------------------------------------------------

    @property
    def shadow(self) -> ShadowReads:
        """The shadow-read experiment: register ``compare``/``ignore``/``on_mismatch`` on it.

        Raises :class:`~dbroute.errors.ShadowReadsDisabledError` when
        ``DBROUTE_SHADOW_READ_PERCENT`` is 0.
        """
        if self._shadow is None:
            from dbroute.errors import ShadowReadsDisabledError

            raise ShadowReadsDisabledError(
                "shadow reads are off: set DBROUTE_SHADOW_READ_PERCENT above 0"
            )
        return self._shadow

    def shadow_report(self) -> ShadowReport:
        """Shadow reads so far, per statement fingerprint (empty when shadow reads are off)."""
        if self._shadow is None:
            from dbroute.shadow import ShadowReport

            return ShadowReport(enabled=False)
        return self._shadow.report()

    def shadow_flush(self, timeout: float | None = None) -> bool:
        """Wait until queued shadow reads are compared; ``False`` if ``timeout`` passed first."""
        return self._shadow.flush(timeout) if self._shadow is not None else True

    # --- lifecycle -------------------------------------------------------------

    def dispose(self) -> None:
        """Close the sync pools. Sessions still open keep their connection until closed."""
        if self._phase_poller is not None:
            self._phase_poller.stop()
        if self._dual_writer is not None:
            self._dual_writer.dispose()
        if self._shadow is not None:
            self._shadow.close()
        for engine in self._engines.values():
            engine.dispose()

    async def adispose(self) -> None:
        """Close every pool, asyncio and sync."""
        for async_engine in self._async_engines.values():
            await async_engine.dispose()
        if self._dual_writer is not None:
            await self._dual_writer.adispose()
        self.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.adispose()

    def __repr__(self) -> str:
        return (
            f"Router(rds_percent={self._state.rds_percent}, kill_switch={self._state.kill_switch}, "
            f"neon={safe_url(self.settings.url(Target.NEON))!r}, "
            f"rds={safe_url(self.settings.url(Target.RDS))!r})"
        )


def _engine(settings: RoutingSettings, target: Target) -> Engine:
    # A forked child (gunicorn --preload...) starts with an empty pool: see dbroute.forking.
    options = _engine_options(settings.pool(target))
    return fresh_pool_after_fork(create_engine(settings.url(target), **options))


def _async_engine(settings: RoutingSettings, target: Target) -> AsyncEngine:
    options = _engine_options(settings.pool(target))
    return fresh_pool_after_fork(create_async_engine(settings.url(target), **options))


def _engine_options(pool: PoolSettings) -> dict[str, Any]:
    return {
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout,
        "pool_recycle": pool.recycle,
        "pool_pre_ping": pool.pre_ping,
        "connect_args": {"connect_timeout": pool.connect_timeout},
    }
