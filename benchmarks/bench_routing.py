"""Routing overhead: `python benchmarks/bench_routing.py`.

1. ``router.target_for(key)`` vs a bare ``mmh3.hash`` of the same salted key
   (goal <= 2x).
2. ``router.session(key)`` + ``select 1`` + close vs a plain SQLAlchemy
   ``sessionmaker`` on the same engine, sync and asyncio (goal <= 1.05x).
Servers come from the test harness (env URLs, Docker or local binaries).
"""

from __future__ import annotations

import asyncio

import mmh3
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker

from _timing import async_per_call_ns, interleaved, per_call_ns, report
from dbroute import Router, RoutingSettings, Target
from dbroute.testing import create_database_pair, drop_database_pair, start_server_pair

SELECT_1 = text("select 1")


def bench_target_for(router: Router) -> None:
    salt, key = router.settings.salt, "user-42"
    salted = f"{salt}:{key}"
    medians = interleaved(
        {
            "mmh3.hash(pre-built salted key)": lambda: mmh3.hash(salted, 0, False),
            "mmh3.hash(f'{salt}:{key}')": lambda: mmh3.hash(f"{salt}:{key}", 0, False),
            "router.target_for(key)": lambda: router.target_for(key),
        },
        calls=200_000,
        rounds=15,
        timer=per_call_ns,
    )
    report(
        "target_for vs a bare mmh3.hash (per call)",
        medians,
        baseline="mmh3.hash(f'{salt}:{key}')",
        goal=2.0,
    )


def bench_sync_session(router: Router) -> None:
    plain = sessionmaker(router.engine(Target.NEON))

    def plain_session() -> None:
        with plain() as session:
            session.execute(SELECT_1)

    def routed_session() -> None:
        with router.session("user-42") as session:
            session.execute(SELECT_1)

    medians = interleaved(
        {
            "plain sessionmaker + select 1": plain_session,
            "router.session(key) + select 1": routed_session,
        },
        calls=2_000,
        rounds=15,
        timer=per_call_ns,
    )
    report(
        "sync session + select 1 + close",
        medians,
        baseline="plain sessionmaker + select 1",
        goal=1.05,
    )


def bench_async_session(router: Router, runner: asyncio.Runner) -> None:
    plain = async_sessionmaker(router.async_engine(Target.NEON))

    async def plain_session() -> None:
        async with plain() as session:
            await session.execute(SELECT_1)

    async def routed_session() -> None:
        async with router.async_session("user-42") as session:
            await session.execute(SELECT_1)

    medians = interleaved(
        {
            "plain async_sessionmaker + select 1": plain_session,
            "router.async_session(key) + select 1": routed_session,
        },
        calls=1_000,
        rounds=15,
        timer=lambda fn, calls: runner.run(async_per_call_ns(fn, calls)),
    )
    report(
        "async session + select 1 + close",
        medians,
        baseline="plain async_sessionmaker + select 1",
        goal=1.05,
    )


def main() -> None:
    with start_server_pair() as servers:
        databases = create_database_pair(servers, prefix="bench")
        settings = RoutingSettings(
            neon_url=databases.neon_url, rds_url=databases.rds_url, rds_percent=0
        )
        try:
            with Router(settings) as router, asyncio.Runner() as runner:
                target = router.target_for("user-42")
                print(f"servers: {servers.source}; key 'user-42' routes to {target}")
                bench_target_for(router)
                bench_sync_session(router)
                bench_async_session(router, runner)
                runner.run(router.adispose())
        finally:
            drop_database_pair(servers, databases)


if __name__ == "__main__":
    main()
