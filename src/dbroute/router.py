"""The Router: one engine per database, one session per key, on the key's database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from dbroute.bucketing import check_key, hash_bucket, threshold
from dbroute.settings import PoolSettings, RoutingSettings, safe_url
from dbroute.target import Reason, Target
from dbroute.telemetry import ROUTING_DECISIONS, decision_attributes

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
        self._threshold = threshold(settings.rds_percent)
        self._salt = settings.salt
        self._kill_switch = settings.kill_switch
        self._force_rds = settings.force_rds
        self._force_neon = settings.force_neon
        # A Session subclass of this router's own: feature modules (dual-write,
        # shadow reads) attach their events to it once, and both the sync and the
        # asyncio sessions (which wrap a sync Session) get them; other routers in
        # the same process are unaffected.
        self.session_class: type[Session] = type("RoutedSession", (Session,), {})
        self._engines = {
            t: create_engine(settings.url(t), **_engine_options(settings.pool(t))) for t in Target
        }
        self._async_engines = {
            t: create_async_engine(settings.url(t), **_engine_options(settings.pool(t)))
            for t in Target
        }
        self._makers = {
            t: sessionmaker(self._engines[t], class_=self.session_class) for t in Target
        }
        self._async_makers = {
            t: async_sessionmaker(self._async_engines[t], sync_session_class=self.session_class)
            for t in Target
        }
        # --- features switched on by settings attach to session_class here; they
        # are imported lazily so the core routes without loading what it does not use.

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
        target, reason = self._route(check_key(key))
        ROUTING_DECISIONS.add(1, decision_attributes(target, reason))
        return target

    def decide(self, key: str | int) -> RoutingDecision:
        """Like :meth:`target_for`, with the bucket and the reason (for support tooling)."""
        canonical = check_key(key)
        target, reason = self._route(canonical)
        return RoutingDecision(canonical, hash_bucket(canonical, self._salt), target, reason)

    def _route(self, key: str) -> tuple[Target, Reason]:
        # Precedence: kill switch, then per-key overrides, then the hash.
        if self._kill_switch:
            return Target.NEON, Reason.KILL_SWITCH
        if key in self._force_rds:
            return Target.RDS, Reason.FORCE
        if key in self._force_neon:
            return Target.NEON, Reason.FORCE
        if hash_bucket(key, self._salt) < self._threshold:
            return Target.RDS, Reason.HASH
        return Target.NEON, Reason.HASH

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

    # --- lifecycle -------------------------------------------------------------

    def dispose(self) -> None:
        """Close the sync pools. Sessions still open keep their connection until closed."""
        for engine in self._engines.values():
            engine.dispose()

    async def adispose(self) -> None:
        """Close every pool, asyncio and sync."""
        for async_engine in self._async_engines.values():
            await async_engine.dispose()
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
            f"Router(rds_percent={self.settings.rds_percent}, kill_switch={self._kill_switch}, "
            f"neon={safe_url(self.settings.url(Target.NEON))!r}, "
            f"rds={safe_url(self.settings.url(Target.RDS))!r})"
        )


def _engine_options(pool: PoolSettings) -> dict[str, Any]:
    return {
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout,
        "pool_recycle": pool.recycle,
        "pool_pre_ping": pool.pre_ping,
        "connect_args": {"connect_timeout": pool.connect_timeout},
    }
