"""Benchmark: dbroute's data diff against reladiff and against the floor.

One table of ``--rows`` rows (default 1 M) on each of two local PostgreSQL
servers, with 10 scattered differences (4 changed values, 3 rows missing on
RDS, 3 rows only on RDS). Measured in the same run, ``--runs`` times each:

* ``dbroute``      ``dbroute.validate.compare_data`` (finds the 10 rows), with
                   the default one connection per server, and ``par 2`` with
                   two per server sharing the snapshot (``parallel=2``);
* ``reladiff``     ``reladiff.diff_tables`` over the same columns (defaults,
                   and tuned: 4 threads, no unique-key check);
* ``python floor`` a full ``SELECT ... ORDER BY id`` streamed from both servers
                   (server-side cursors) and merged/compared in Python;
* ``scan``         ``select count(*), sum(hashtext(t::text))`` on each server:
                   one after the other (``scan seq``) and at the same time
                   (``scan both``), the cost of reading both tables once.

Goal (issue 5): dbroute faster than reladiff and within 2x of the sequential
server-side scan of both tables. Needs ``pip install 'dbroute[bench]'``
(reladiff and its psycopg2 driver).

    python benchmarks/bench_validate.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from dbroute.testing import (
    create_database_pair,
    drop_database_pair,
    libpq_url,
    start_server_pair,
)
from dbroute.validate import DataOptions, compare_data

SETUP = """
create table bench (
    id bigint primary key,
    a  text,
    b  numeric(14, 2),
    c  timestamptz,
    d  integer
);
insert into bench
select g, md5(g::text), g * 1.25, timestamptz '2020-01-01 00:00+00' + g * interval '1 second',
       g % 1000
from generate_series(1, {rows}) g;
"""

COLUMNS = ("a", "b", "c", "d")


def plant(conn: psycopg.Connection[Any], rows: int) -> set[int]:
    """Ten scattered differences on RDS; returns their keys."""
    step = rows // 11
    keys = [step * i + 7 for i in range(1, 11)]
    changed, missing, extra = keys[:4], keys[4:7], [rows + 1000 + i for i in range(3)]
    conn.execute("update bench set a = 'changed' where id = any(%s)", [changed])
    conn.execute("delete from bench where id = any(%s)", [missing])
    conn.execute("insert into bench (id, a) select unnest(%s::bigint[]), 'extra'", [extra])
    conn.commit()
    return set(changed) | set(missing) | set(extra)


COUNTS: dict[str, int] = {}


def run_dbroute(neon: str, rds: str, planted: set[int], parallel: int = 1) -> None:
    options = DataOptions(tables=["public.bench"], parallel=parallel)
    table = compare_data(neon, rds, options).table("public", "bench")
    COUNTS.update(neon=table.rows_neon, rds=table.rows_rds, downloaded=table.rows_downloaded)
    COUNTS.update(queries=table.queries)
    found = {int(k[0]) for k in table.differing_keys()}
    assert found == planted, f"dbroute found {sorted(found)}, planted {sorted(planted)}"


def run_reladiff(neon: str, rds: str, planted: set[int], tuned: bool) -> None:
    import reladiff

    threads = 4 if tuned else 1
    tables = [
        reladiff.connect_to_table(libpq_url(url), "bench", "id", thread_count=threads)
        for url in (neon, rds)
    ]
    diff = reladiff.diff_tables(
        *tables,
        extra_columns=COLUMNS,
        threaded=True,
        max_threadpool_size=threads,
        validate_unique_key=not tuned,
    )
    found = {int(row[1][0]) for row in diff}
    for table in tables:
        table.database.close()
    assert found == planted, f"reladiff found {sorted(found)}, planted {sorted(planted)}"


def run_python_floor(neon: str, rds: str, planted: set[int]) -> None:
    query = "select id, a, b, c, d from bench order by id"
    found: set[int] = set()
    with psycopg.connect(libpq_url(neon)) as a, psycopg.connect(libpq_url(rds)) as b:
        left = a.cursor(name="left")
        right = b.cursor(name="right")
        left.itersize = right.itersize = 20_000
        left.execute(query)
        right.execute(query)
        x, y = next(left, None), next(right, None)
        while x is not None or y is not None:
            if y is None or (x is not None and x[0] < y[0]):
                found.add(x[0])  # type: ignore[index]
                x = next(left, None)
            elif x is None or y[0] < x[0]:
                found.add(y[0])
                y = next(right, None)
            else:
                if x != y:
                    found.add(x[0])
                x, y = next(left, None), next(right, None)
    assert found == planted, f"python floor found {sorted(found)}"


SCAN = "select count(*), sum(hashtext(t::text)) from bench t"


def scan(url: str) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(SCAN).fetchall()


def run_scan_sequential(neon: str, rds: str, _planted: set[int]) -> None:
    scan(neon)
    scan(rds)


def run_scan_both(neon: str, rds: str, _planted: set[int]) -> None:
    other = threading.Thread(target=scan, args=(rds,))
    other.start()
    scan(neon)
    other.join()


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-reladiff", action="store_true")
    args = parser.parse_args()

    with start_server_pair() as servers:
        databases = create_database_pair(servers, prefix="bench")
        try:
            for url in (databases.neon_url, databases.rds_url):
                with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                    conn.execute(SETUP.format(rows=args.rows).encode())
                    conn.execute("vacuum analyze bench")
            with psycopg.connect(libpq_url(databases.rds_url)) as conn:
                planted = plant(conn, args.rows)
                conn.execute("commit")
                conn.autocommit = True
                conn.execute("vacuum analyze bench")
            neon, rds = databases.neon_url, databases.rds_url
            contenders: dict[str, Callable[[], None]] = {
                "scan both": lambda: run_scan_both(neon, rds, planted),
                "scan seq": lambda: run_scan_sequential(neon, rds, planted),
                "dbroute": lambda: run_dbroute(neon, rds, planted),
                "dbroute par 2": lambda: run_dbroute(neon, rds, planted, parallel=2),
                "python floor": lambda: run_python_floor(neon, rds, planted),
            }
            if not args.skip_reladiff:
                contenders["reladiff"] = lambda: run_reladiff(neon, rds, planted, tuned=False)
                contenders["reladiff tuned"] = lambda: run_reladiff(neon, rds, planted, True)
            scan(neon), scan(rds)  # warm the caches once for everybody
            results = {name: timed(fn, args.runs) for name, fn in contenders.items()}
        finally:
            drop_database_pair(servers, databases)

    print(
        f"\nrows: neon {COUNTS['neon']:,}, rds {COUNTS['rds']:,}; 10 differences; "
        f"{args.runs} runs each; servers: {servers.source}; dbroute downloaded "
        f"{COUNTS['downloaded']:,} key/hash pairs in {COUNTS['queries']} queries"
    )
    print(f"{'contender':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'dbroute ÷ it':>14}")
    ours = statistics.median(results["dbroute"])
    for name, times in results.items():
        median = statistics.median(times)
        print(
            f"{name:<16}{median:>10.3f}{min(times):>9.3f}{max(times):>9.3f}{ours / median:>14.2f}"
        )


if __name__ == "__main__":
    main()
