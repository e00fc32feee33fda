"""Timing helpers shared by the benchmark scripts: interleaved rounds, medians, ratios.

Variants are timed in interleaved rounds (A, B, A, B, ...) so drift on a busy
machine hits both alike; each figure is the median per-call time over rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

V = TypeVar("V")


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    """Average nanoseconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


async def async_per_call_ns(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """Average nanoseconds per awaited call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        await fn()
    return (time.perf_counter_ns() - start) / calls


def interleaved(
    variants: dict[str, V],
    *,
    calls: int,
    rounds: int,
    timer: Callable[[V, int], float],
) -> dict[str, float]:
    """Median per-call nanoseconds of each variant, timed in interleaved rounds.

    ``timer(fn, calls)`` times one round of a variant: :func:`per_call_ns`, or
    for coroutine functions a wrapper running :func:`async_per_call_ns`.
    """
    for fn in variants.values():  # warm-up: pools, caches, lazy imports
        timer(fn, max(1, calls // 10))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(timer(fn, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, medians: dict[str, float], baseline: str, goal: float | None = None) -> None:
    """Print one table: each variant's median time and its ratio to ``baseline``."""
    print(f"\n{title}")
    base = medians[baseline]
    for name, value in medians.items():
        ratio = value / base
        flag = ""
        if goal is not None and name != baseline:
            flag = f"  (goal <= {goal:.2f}x: {'met' if ratio <= goal else 'NOT met'})"
        print(f"  {name:<44} {value / 1000:>10.2f} us   {ratio:>6.3f}x{flag}")
