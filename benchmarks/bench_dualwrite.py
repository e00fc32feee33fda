"""Dual-write cost: single-row insert+commit latency and 8-writer throughput.

Baseline and candidate run in the same process, on the same primary, in
alternating blocks: a plain session (dual-write off) inserting into a table
dual-write does not capture, and a dual-writing session inserting into a
captured table (trigger, collect, mirror to the secondary, confirm).

    python benchmarks/bench_dualwrite.py [--rounds 7] [--block 200] [--seconds 3] [--durable]

``--linguistic`` creates both databases with ICU's en-US collation, as RDS
creates them with en_US.UTF-8 (the test servers default to ``C``).

``--durable`` turns ``fsync``, ``synchronous_commit`` and ``full_page_writes``
back on for both test servers (they run without them for speed), as Neon and
RDS do: every commit then waits for its WAL flush.

Prints median latencies, the ratio (goal <= 2.2x), the client CPU per commit
(``time.thread_time``: less sensitive to other load than wall time) and
throughput under 8 concurrent writers. Three *floors*, measured in the same
rounds, show what any dual-write must pay on this machine: the plain commit
plus one round trip to the secondary (``select 1``); plus the two round trips
a mirror needs (one per database), with no work at all; and plus the least a
row-based mirror does (read the row by key in the writer's transaction,
insert it durably on the secondary: no journal, intents or conflict check).

Read the ratio with the machine in mind. Here the app and both servers share
the CPUs, so every round trip wakes a sleeping process and the two extra
ones cost far more than on a network with servers of their own; and on a
busy machine the plain commit gets *faster* (no idle CPU to wake) while
dual-write's extra CPU competes with the load, so the ratio rises (4-5x).
Five runs on a 2-vCPU machine (26 November 2026, plain 0.64-0.68 ms):
dual-write 1.33-1.36 ms, 1.99-2.09x, median 2.01x; copy floor 1.96-2.04x; 8
writers 0.52-0.59 of plain; ``--durable`` 2.19x (docs/dual-write.md#cost). The machine is shared
and noisy: run it 2-3 times. ``DBROUTE_DUAL_WRITE_NOTICES=false`` in the
environment measures commits without row images by notice.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from dbroute import Router, RoutingSettings
from dbroute.target import Target
from dbroute.testing import (
    ServerPair,
    create_database_pair,
    drop_database_pair,
    libpq_url,
    start_server_pair,
)

DDL = """
create table bench_plain (id bigserial primary key, payload text not null);
create table bench_dw (id bigserial primary key, payload text not null);
create table bench_captured (id bigserial primary key, payload text not null);
"""


def insert_commit(
    router: Router, table: str, extra: Callable[[Session], object] | None = None
) -> None:
    with router.session("bench") as session, session.begin():
        session.execute(text(f"insert into {table} (payload) values ('x')"))
        if extra is not None:
            extra(session)


def block_latency(run: Callable[[], None], n: int) -> tuple[float, float]:
    """Median seconds and mean client CPU seconds of ``n`` calls of ``run``."""
    samples = []
    cpu = time.thread_time()
    for _ in range(n):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), (time.thread_time() - cpu) / n


def throughput(router: Router, table: str, writers: int, seconds: float) -> float:
    """Commits per second with ``writers`` threads for ``seconds``."""
    stop = threading.Event()
    counts = [0] * writers

    def run(w: int) -> None:
        while not stop.is_set():
            insert_commit(router, table)
            counts[w] += 1

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def make_durable(servers: ServerPair) -> None:
    """Durable commits on both servers (the test servers' defaults trade them for speed)."""
    for server in (servers.neon, servers.rds):
        with psycopg.connect(libpq_url(server.url), autocommit=True) as admin:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                admin.execute(f"alter system set {setting} = on")
            admin.execute("select pg_reload_conf()")
            # The reload is asynchronous: wait until this server applies it.
            while admin.execute("show fsync").fetchone() != ("on",):
                time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--durable", action="store_true", help="production durability settings")
    parser.add_argument(
        "--linguistic",
        action="store_true",
        help="databases with a linguistic default collation (ICU en-US), as RDS's en_US.UTF-8",
    )
    args = parser.parse_args()
    with start_server_pair() as servers:
        if args.durable:
            make_durable(servers)
        options = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        databases = create_database_pair(
            servers, prefix="bench", options=options if args.linguistic else ""
        )
        try:
            urls = {"neon_url": databases.neon_url, "rds_url": databases.rds_url}
            with (
                Router(RoutingSettings(**urls)) as plain,
                Router(RoutingSettings(**urls, dual_write=True)) as dual,
                # The floors' extra round trips: autocommit, nothing to do.
                psycopg.connect(libpq_url(databases.rds_url), autocommit=True) as rds,
                psycopg.connect(libpq_url(databases.neon_url), autocommit=True) as neon,
            ):
                for target in Target:
                    with plain.engine(target).begin() as conn:
                        conn.exec_driver_sql(DDL)
                plain.setup(exclude=["bench_plain"])
                assert dual.target_for("bench") is Target.NEON  # the floors assume it

                rds.execute("set synchronous_commit = on")  # as dbroute.apply() commits

                def one_trip(session: Session) -> None:
                    rds.execute("select 1").fetchone()

                def two_trips(session: Session) -> None:
                    neon.execute("select 1").fetchone()
                    rds.execute("select 1").fetchone()

                def copy_row(session: Session) -> None:
                    # The least a row-based mirror does: read the row in the writer's
                    # transaction, write it durably to the secondary. No journal.
                    # Straight on the driver connections, as dual-write does.
                    driver: Any = session.connection().connection.driver_connection
                    row = driver.execute(
                        "select id, payload from bench_plain where id = lastval()"
                    ).fetchone()
                    rds.execute("insert into bench_plain (id, payload) values (%s, %s)", row)

                variants: dict[str, Callable[[], None]] = {
                    "plain session": lambda: insert_commit(plain, "bench_plain"),
                    # Capture alone: a plain session on a captured table (trigger only).
                    "capture only": lambda: insert_commit(plain, "bench_captured"),
                    "floor: +1 round trip": lambda: insert_commit(plain, "bench_plain", one_trip),
                    "floor: +2 round trips": lambda: insert_commit(plain, "bench_plain", two_trips),
                    "floor: copy the row": lambda: insert_commit(plain, "bench_plain", copy_row),
                    "dual-write": lambda: insert_commit(dual, "bench_dw"),
                }
                for run in variants.values():
                    block_latency(run, 100)  # warm pools and caches
                wall: dict[str, list[float]] = {name: [] for name in variants}
                cpu: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.rounds):
                    for name, run in variants.items():
                        median, mean_cpu = block_latency(run, args.block)
                        wall[name].append(median * 1000)
                        cpu[name].append(mean_cpu * 1000)
                base = wall["plain session"]
                print(f"single-row insert+commit, {args.rounds} rounds x {args.block}:")
                for name in variants:
                    ratios = [w / b for w, b in zip(wall[name], base, strict=True)]
                    print(
                        f"  {name:22s} median {statistics.median(wall[name]):.3f} ms "
                        f"({statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f}x)"
                        f"  client CPU {statistics.median(cpu[name]):.3f} ms"
                    )
                ratios = [w / b for w, b in zip(wall["dual-write"], base, strict=True)]
                print(
                    f"  ratio             median {statistics.median(ratios):.2f}x "
                    f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x; goal <= 2.2x)"
                )
                base_tps = throughput(plain, "bench_plain", 8, args.seconds)
                dual_tps = throughput(dual, "bench_dw", 8, args.seconds)
                print("8 concurrent writers:")
                print(f"  plain session     {base_tps:.0f} commits/s")
                print(
                    f"  dual-write        {dual_tps:.0f} commits/s "
                    f"({dual_tps / base_tps:.2f} of plain)"
                )
                with dual.engine(Target.NEON).connect() as conn:
                    left = conn.execute(
                        text("select count(*) from dbroute.journal where table_name = 'bench_dw'")
                    ).scalar()
                print(f"dual-written rows left in the journal (must be 0): {left}")
        finally:
            drop_database_pair(servers, databases)


if __name__ == "__main__":
    main()
