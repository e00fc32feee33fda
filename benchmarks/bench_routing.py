"""Routing overhead: `python benchmarks/bench_routing.py`.

1. ``router.target_for(key)`` vs a bare ``mmh3.hash`` of the same salted key
   (goal <= 2x).
2. ``router.session(key)`` + ``select 1`` + close vs a plain SQLAlchemy
   ``sessionmaker`` on the same engine, sync and asyncio (goal <= 1.05x).
Servers come from the test harness (env URLs, Docker or local binaries).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import mmh3
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker

from _timing import interleaved, report
from dbroute import Router, RoutingSettings, Target
from dbroute.testing import create_database_pair, start_server_pair

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
    )
    report(
        "sync session + select 1 + close",
        medians,
        baseline="plain sessionmaker + select 1",
        goal=1.05,
    )


async def _async_per_call(fn: object, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        await fn()  # type: ignore[operator]
    return (time.perf_counter_ns() - start) / calls


async def bench_async_session(router: Router) -> None:
    plain = async_sessionmaker(router.async_engine(Target.NEON))

    async def plain_session() -> None:
        async with plain() as session:
            await session.execute(SELECT_1)

    async def routed_session() -> None:
        async with router.async_session("user-42") as session:
            await session.execute(SELECT_1)

    variants = {
        "plain async_sessionmaker + select 1": plain_session,
        "router.async_session(key) + select 1": routed_session,
    }
    for fn in variants.values():
        await _async_per_call(fn, 200)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(15):
        for name, fn in variants.items():
            samples[name].append(await _async_per_call(fn, 1_000))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    report(
        "async session + select 1 + close",
        medians,
        baseline="plain async_sessionmaker + select 1",
        goal=1.05,
    )
    await router.adispose()


def main() -> None:
    with start_server_pair() as servers:
        databases = create_database_pair(servers, prefix="bench")
        settings = RoutingSettings(
            neon_url=databases.neon_url, rds_url=databases.rds_url, rds_percent=0
        )
        router = Router(settings)
        print(f"servers: {servers.source}; key 'user-42' routes to {router.target_for('user-42')}")
        bench_target_for(router)
        bench_sync_session(router)
        asyncio.run(bench_async_session(router))
        router.dispose()


if __name__ == "__main__":
    main()
