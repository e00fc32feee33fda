"""Which reads are shadowed: a percentage, random or deterministic per query.

Without a seed each eligible read is shadowed with probability
``percent / 100``. With a seed the decision hashes the seed, the SQL text and
the parameters through dbroute's bucketing contract: the same query (same SQL
and values) is always shadowed, or never, in every process; tests pin it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from dbroute.bucketing import BUCKETS, hash_bucket, threshold

__all__ = ["Sampler"]


class Sampler:
    """Decides whether one read is shadowed."""

    __slots__ = ("_random", "_seed", "_threshold")

    def __init__(self, percent: Decimal | int | float, seed: str | None = None) -> None:
        self._threshold = threshold(percent)
        self._seed = seed
        self._random = random.Random()  # noqa: S311 - sampling, not security

    def decide_early(self) -> bool | None:
        """The decision when it does not depend on the query (no seed); else ``None``.

        Lets a read that is not sampled skip all shadow work before it runs.
        """
        if self._threshold >= BUCKETS:
            return True
        if self._threshold <= 0:
            return False
        if self._seed is None:
            return self._random.random() * BUCKETS < self._threshold
        return None

    def sampled(self, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None) -> bool:
        """Whether the read ``sql`` with ``parameters`` is shadowed."""
        early = self.decide_early()
        if early is not None:
            return early
        key = f"{sql}\x00{_render(parameters)}"
        return hash_bucket(key, str(self._seed)) < self._threshold


def _render(parameters: Mapping[str, Any] | Sequence[Any] | None) -> str:
    # Mapping order is the bind order SQLAlchemy produced: stable per statement.
    if isinstance(parameters, Mapping):
        return "\x1f".join(f"{k}={v!r}" for k, v in parameters.items())
    return repr(parameters)
