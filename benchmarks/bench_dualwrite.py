"""Dual-write cost: single-row insert+commit latency and 8-writer throughput.

Baseline and candidate run in the same process, on the same primary, in
alternating blocks: a plain session (dual-write off) inserting into a table
dual-write does not capture, and a dual-writing session inserting into a
captured table (trigger, collect, mirror to the secondary, confirm).

    python benchmarks/bench_dualwrite.py [--rounds 7] [--block 200] [--seconds 3]

Prints median latencies, the ratio (goal <= 2.2x) and throughput under 8
concurrent writers. The machine is shared and noisy: run it 2-3 times.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from sqlalchemy import text

from dbroute import Router, RoutingSettings
from dbroute.target import Target
from dbroute.testing import create_database_pair, drop_database_pair, start_server_pair

DDL = """
create table bench_plain (id bigserial primary key, payload text not null);
create table bench_dw (id bigserial primary key, payload text not null);
create table bench_captured (id bigserial primary key, payload text not null);
"""


def insert_commit(router: Router, table: str) -> None:
    with router.session("bench") as session, session.begin():
        session.execute(text(f"insert into {table} (payload) values ('x')"))


def block_latency(router: Router, table: str, n: int) -> float:
    """Median seconds of ``n`` single-row insert+commit transactions."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        insert_commit(router, table)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with start_server_pair() as servers:
        databases = create_database_pair(servers, prefix="bench")
        try:
            urls = {"neon_url": databases.neon_url, "rds_url": databases.rds_url}
            with (
                Router(RoutingSettings(**urls)) as plain,
                Router(RoutingSettings(**urls, dual_write=True)) as dual,
            ):
                for target in Target:
                    with plain.engine(target).begin() as conn:
                        conn.exec_driver_sql(DDL)
                plain.setup(exclude=["bench_plain"])
                for router, table in ((plain, "bench_plain"), (dual, "bench_dw")):
                    block_latency(router, table, 100)  # warm pools and caches
                ratios, plain_ms, dual_ms, capture_ms = [], [], [], []
                for _ in range(args.rounds):
                    base = block_latency(plain, "bench_plain", args.block)
                    # Capture alone: a plain session on a captured table (trigger only).
                    capture_ms.append(block_latency(plain, "bench_captured", args.block) * 1000)
                    cand = block_latency(dual, "bench_dw", args.block)
                    plain_ms.append(base * 1000)
                    dual_ms.append(cand * 1000)
                    ratios.append(cand / base)
                print(f"single-row insert+commit, {args.rounds} rounds x {args.block}:")
                print(f"  plain session     median {statistics.median(plain_ms):.3f} ms")
                print(f"  capture only      median {statistics.median(capture_ms):.3f} ms")
                print(f"  dual-write        median {statistics.median(dual_ms):.3f} ms")
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
