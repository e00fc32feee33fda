"""Router.target_for against a bare mmh3 call, measured in the same run.

The router keeps its routing inputs in one immutable snapshot swapped at
runtime (phase changes); this checks that the indirection keeps
``target_for`` within 2x of the hash itself. Needs no database: engines
connect lazily.

    python benchmarks/bench_target_for.py [--repeat 7] [--number 200000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import mmh3

from dbroute import Router, RoutingSettings

KEYS = [f"user-{n}" for n in range(1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    settings = RoutingSettings(
        neon_url="postgresql://u@127.0.0.1:1/neon",
        rds_url="postgresql://u@127.0.0.1:1/rds",
        rds_percent=50,
    )
    router = Router(settings)
    keys = KEYS

    def bare() -> None:
        for key in keys:
            mmh3.hash(f"dbroute:{key}", 0, False)

    def routed() -> None:
        for key in keys:
            router.target_for(key)

    loops = max(1, args.number // len(keys))
    # Interleave the two so machine noise hits both alike; keep the best of each.
    bare_times, routed_times = [], []
    for _ in range(args.repeat):
        bare_times.append(timeit.timeit(bare, number=loops))
        routed_times.append(timeit.timeit(routed, number=loops))
    calls = loops * len(keys)
    bare_ns = min(bare_times) / calls * 1e9
    routed_ns = min(routed_times) / calls * 1e9
    ratios = sorted(r / b for r, b in zip(routed_times, bare_times, strict=True))
    print(f"bare mmh3.hash:      {bare_ns:7.1f} ns/call")
    print(f"Router.target_for:   {routed_ns:7.1f} ns/call")
    print(
        f"ratio (best/best):   {routed_ns / bare_ns:5.2f}x   "
        f"per-round median {statistics.median(ratios):.2f}x, "
        f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x"
    )
    router.dispose()


if __name__ == "__main__":
    main()
