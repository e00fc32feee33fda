"""Shadow reads: primary-path latency with every read shadowed vs none, same run.

    python benchmarks/bench_shadow.py [--calls 50] [--rounds 60] [--rows 10] [--pin]

Five ways to run one routed read (``router.session(key)``, a ``--rows``-row select,
``.all()``, close), timed per call and reported as p50/p90:

* ``shadow 0 %``      the baseline: no hooks attached;
* ``shadow 10 %``     one read in ten shadowed (a typical experiment);
* ``shadow 100 %``    every read copied and shadowed in the background
                      (goal: p50 <= 1.05x the baseline);
* ``laboratory``      GitHub Scientist's Python port running the same read on
                      the other database inline as its candidate (the cost
                      dbroute avoids; 3.3-3.9x here);
* ``+ external load`` no shadowing, but another process runs the shadow's
                      database work back to back meanwhile: what the extra
                      load costs this machine whatever the design (an upper
                      bound: it runs flat out, shadowing runs once per read).

Blocks of ``--calls`` reads alternate between the variants; after each
shadowed block the shadow queue is drained (untimed), so the baseline never
pays for the shadow's backlog while the shadowed block does pay for its own
background work competing for the CPU.

``--pin`` (Linux, 2+ CPUs, local servers) places the work as production does
on separate machines: the caller and the Neon server on CPU 0, everything the
shadow adds (its worker process, the RDS server, the external-load control) on
CPU 1. Without it, all of it shares every CPU of this machine.

"caller CPU" is the CPU time of the calling thread alone (``time.thread_time``):
what the read itself costs, free of scheduling noise and of time spent waiting
for the GIL; "wall" is what the caller experiences on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import laboratory
from sqlalchemy import TextClause, text

from dbroute import Router, RoutingSettings, Target
from dbroute.testing import create_database_pair, libpq_url, start_server_pair

ITEMS = 1000


def query(rows: int) -> TextClause:
    """The benchmark's read: ``rows`` consecutive items from ``:a``."""
    return text(f"select id, name, price from items where id between :a and :a + {rows - 1}")


def first_id(n: int, rows: int) -> int:
    """Where read ``n`` starts: the reads walk the table, always ``rows`` rows long."""
    return n % (ITEMS - rows + 1) + 1


SETUP = f"""
create table items (id int primary key, name text not null, price numeric(10, 2) not null);
insert into items select g, 'item-' || g, g * 1.25 from generate_series(1, {ITEMS}) g;
"""


# The same statements as one shadow, back to back, from another process: no
# GIL shared, only the machine (CPU, both PostgreSQL servers). On a small box
# this is the floor any shadowing design pays; in production the shadow's
# server work runs on the other database's machine. (Three round trips, as the
# worker's fallback sends them: a bound from above for its one-round-trip path.)
_EXTERNAL_LOAD = r"""
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
sql = "select id, name, price from items where id between %(a)s and %(a)s + " + sys.argv[2]
while True:
    with conn.cursor() as cursor:
        cursor.execute(b"begin read only; set local statement_timeout = 2000")
        cursor.execute("declare c no scroll cursor for " + sql, {"a": 5})
        cursor.execute(b"fetch 10001 from c; rollback")
        cursor.fetchall()
"""


class ExternalLoad:
    """A subprocess running shadow-equivalent queries on RDS while a block is timed."""

    def __init__(self, rds_url: str, rows: int, cpus: set[int] | None = None) -> None:
        self._url = libpq_url(rds_url)
        self._rows = rows
        self._cpus = cpus
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _EXTERNAL_LOAD, self._url, str(self._rows - 1)]
        )
        if self._cpus is not None:
            os.sched_setaffinity(self._process.pid, self._cpus)
        time.sleep(0.3)  # connected and looping

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()


# --- --pin: production-like placement ------------------------------------------

APP_CPU, SHADOW_CPU = {0}, {1}


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:  # the process ended meanwhile
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def pin_server(router: Router, target: Target, cpus: set[int]) -> None:
    """Pin a server's postmaster and every process it has forked (new ones inherit it)."""
    with router.engine(target).connect() as conn:
        backend = conn.exec_driver_sql("select pg_backend_pid()").scalar_one()
    with open(f"/proc/{backend}/stat") as stat:
        postmaster = int(stat.read().rsplit(")", 1)[1].split()[1])
    for pid in [postmaster, *_children(postmaster)]:
        os.sched_setaffinity(pid, cpus)


def pin_shadow_workers(cpus: set[int]) -> int:
    """Pin the shadow worker processes (started on first use, so call after a warm-up)."""
    workers = 0
    for pid in _children(os.getpid()):
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"dbroute.shadow.worker" in cmdline.read():
                for thread in os.listdir(f"/proc/{pid}/task"):  # all threads
                    os.sched_setaffinity(int(thread), cpus)
                workers += 1
    return workers


def routed_read(router: Router, rows: int = 10) -> Callable[[int], object]:
    sql = query(rows)

    def read(n: int) -> object:
        with router.session(f"user-{n % 100}") as session:
            return session.execute(sql, {"a": first_id(n, rows)}).all()

    return read


def laboratory_read(router: Router, rows: int = 10) -> Callable[[int], object]:
    primary = routed_read(router, rows)
    sql = query(rows)

    def candidate(n: int) -> object:
        with router.engine(Target.RDS).connect() as conn:
            return conn.execute(sql, {"a": first_id(n, rows)}).all()

    def read(n: int) -> object:
        experiment = laboratory.Experiment(name="shadow")
        experiment.control(primary, args=[n])
        experiment.candidate(candidate, args=[n])
        return experiment.conduct()

    return read


def timed(read: Callable[[int], object], start: int, calls: int) -> list[tuple[float, float]]:
    """(wall seconds, calling thread's CPU seconds) of each read."""
    samples = []
    for n in range(start, start + calls):
        began, cpu = time.perf_counter(), time.thread_time()
        read(n)
        samples.append((time.perf_counter() - began, time.thread_time() - cpu))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50, help="reads per block")
    parser.add_argument("--rounds", type=int, default=60, help="blocks per variant")
    parser.add_argument("--rows", type=int, default=10, help="rows per read (1 to 1000)")
    parser.add_argument("--pin", action="store_true", help="production-like CPU placement")
    args = parser.parse_args()
    if not 1 <= args.rows <= ITEMS:
        parser.error(f"--rows must be between 1 and {ITEMS}")
    with start_server_pair() as pair:
        databases = create_database_pair(pair, prefix="bench")
        base = {"neon_url": databases.neon_url, "rds_url": databases.rds_url}
        plain = Router(RoutingSettings(**base))
        shadowed = Router(
            RoutingSettings(**base, shadow_read_percent=100, shadow_queue_size=100_000)
        )
        tenth = Router(RoutingSettings(**base, shadow_read_percent=10, shadow_queue_size=100_000))
        for target in Target:
            with plain.engine(target).begin() as conn:
                conn.exec_driver_sql(SETUP)
        variants = {
            "shadow 0 %": routed_read(plain, args.rows),
            "shadow 10 %": routed_read(tenth, args.rows),
            "shadow 100 %": routed_read(shadowed, args.rows),
            "laboratory (inline candidate)": laboratory_read(plain, args.rows),
            "shadow 0 % + external load": routed_read(plain, args.rows),
        }
        if args.pin:
            os.sched_setaffinity(0, APP_CPU)  # this thread; threads it starts inherit it
            pin_server(plain, Target.NEON, APP_CPU)
            pin_server(plain, Target.RDS, SHADOW_CPU)
        external = ExternalLoad(databases.rds_url, args.rows, SHADOW_CPU if args.pin else None)
        for read in variants.values():  # warm-up: pools, statement caches
            timed(read, 0, args.calls)
        shadowed.shadow_flush(60)
        if args.pin:
            print(
                f"pinned: app + neon on CPU {APP_CPU}, shadow worker processes "
                f"({pin_shadow_workers(SHADOW_CPU)}) + rds on CPU {SHADOW_CPU}"
            )
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_number in range(args.rounds):
            for name, read in variants.items():
                if name.endswith("external load"):
                    with external:
                        samples[name] += timed(read, round_number * args.calls, args.calls)
                    continue
                samples[name] += timed(read, round_number * args.calls, args.calls)
                shadowed.shadow_flush(60)
                tenth.shadow_flush(60)
        report = shadowed.shadow_report()
        wall0 = statistics.median(w for w, _ in samples["shadow 0 %"])
        cpu0 = statistics.median(c for _, c in samples["shadow 0 %"])
        print(f"\n{args.rounds} x {args.calls} reads per variant ({args.rows} rows each)")
        print(
            f"  {'':32} {'wall p50':>9} {'p90':>9} {'ratio':>7} {'caller CPU p50':>15} {'ratio':>7}"
        )
        for name, values in samples.items():
            wall = [w for w, _ in values]
            p50, p90 = statistics.median(wall), statistics.quantiles(wall, n=10)[-1]
            cpu = statistics.median(c for _, c in values)
            print(
                f"  {name:<32} {p50 * 1e6:7.0f}us {p90 * 1e6:7.0f}us {p50 / wall0:6.3f}x"
                f" {cpu * 1e6:13.0f}us {cpu / cpu0:6.3f}x"
            )
        print(
            f"  shadowed reads compared: {report.compared}, mismatched: {report.mismatched}, "
            f"errors: {report.errors}, dropped: {report.dropped}"
        )
        for router in (plain, tenth, shadowed):
            router.dispose()


if __name__ == "__main__":
    main()
