"""The bucketing contract: which bucket a routing key falls in.

This module is a compatibility contract shared with services in other
languages (see ``docs/bucketing.md`` and ``tests/bucket_vectors.json``)::

    h      = murmur3_x86_32(utf8(f"{salt}:{key}"), seed=0)   # unsigned
    bucket = (h % 100) * 100 + (h // 100) % 100              # 0..9999 basis points
    RDS iff bucket < round(rds_percent * 100)

The major digit ``h % 100`` makes whole-percent decisions identical to
Unleash's ``gradualRollout`` strategy (``h % 100 + 1 <= percent`` with the salt
as group id). It imports nothing else of dbroute, on purpose.
"""

from __future__ import annotations

from decimal import Decimal

import mmh3

__all__ = ["BUCKETS", "DEFAULT_SALT", "bucket", "check_key", "hash_bucket", "threshold"]

#: Number of buckets: one per basis point (0.01 %).
BUCKETS = 10_000
#: The salt used when none is configured; also Unleash's group id for agreement.
DEFAULT_SALT = "dbroute"


def check_key(key: object) -> str:
    """Return the canonical string form of a routing key, or raise.

    ``str`` keys are used as they are; ``int`` keys route exactly like their
    decimal string. Anything else (``None``, ``bool``, ``float``, ``bytes``,
    ``UUID``...) raises ``TypeError`` naming the type, and an empty string
    raises ``ValueError``: a bad key must never fall into a default route.
    """
    # type() rather than isinstance(): bool is an int subclass, and str
    # subclasses (enums) could render differently in other languages.
    kind = type(key)
    if kind is str:
        if not key:
            from dbroute.errors import InvalidKeyError

            raise InvalidKeyError("routing key is an empty string; pass a user or tenant id")
        return key  # type: ignore[return-value]
    if kind is int:
        return str(key)
    raise TypeError(
        f"routing key must be str or int, got {kind.__name__}"
        + (": pass str(key) explicitly if this is intended" if key is not None else "")
    )


def bucket(key: str | int, salt: str = DEFAULT_SALT) -> int:
    """Return the bucket of ``key`` under ``salt``: an int in ``[0, 10000)``.

    The same key and salt give the same bucket in every process, on every
    platform and in every language that implements the contract.

    >>> bucket("user-42")
    1787
    """
    return hash_bucket(check_key(key), salt)


def hash_bucket(canonical_key: str, salt: str) -> int:
    """:func:`bucket` for a key already checked by :func:`check_key` (the hot path)."""
    h: int = mmh3.hash(f"{salt}:{canonical_key}", 0, False)
    return (h % 100) * 100 + (h // 100) % 100


def threshold(rds_percent: Decimal | float | int) -> int:
    """The bucket threshold for a percentage: buckets below it go to RDS.

    ``rds_percent`` may have at most two decimals (0.01 % is one bucket).
    """
    value = Decimal(str(rds_percent))
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise ValueError(f"rds_percent must be between 0 and 100, got {rds_percent}")
    scaled = value * 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"rds_percent has at most two decimals (0.01 % steps), got {rds_percent}")
    return int(scaled)
