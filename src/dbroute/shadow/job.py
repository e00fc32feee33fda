"""One shadow read on its way to the worker process, and the options that steer it per statement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg.types.json import Json, Jsonb

from dbroute.shadow.capture import RawRows
from dbroute.shadow.results import ResultSet
from dbroute.target import Target

__all__ = [
    "OPT_COMPARE",
    "OPT_IGNORE",
    "OPT_OUT",
    "Comparator",
    "NotPortable",
    "ShadowJob",
    "job_message",
    "snapshot",
]

#: ``execution_options(dbroute_shadow=False)``: never shadow this statement.
OPT_OUT = "dbroute_shadow"
#: ``execution_options(dbroute_shadow_compare=fn)``: ``fn(primary, shadow) -> bool`` decides
#: equality.
OPT_COMPARE = "dbroute_shadow_compare"
#: ``execution_options(dbroute_shadow_ignore=fn)``: ``fn(primary, shadow) -> bool``, True ignores a
#: difference.
OPT_IGNORE = "dbroute_shadow_ignore"

#: ``compare`` and ``ignore`` callables receive both :class:`ResultSet` objects.
Comparator = Callable[[ResultSet, ResultSet], bool]


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """What the worker process needs: the statement, its parameters and the primary's answer.

    ``judge`` says which user callables (they stay in the application's
    process) must see the two results: ``"compare"`` always, ``"ignore"``
    when the built-in comparison finds a difference, ``None`` never.
    """

    id: int
    primary_target: Target
    sql: str
    parameters: Mapping[str, Any] | Sequence[Any] | None
    primary: RawRows
    primary_seconds: float
    judge: str | None = None

    @classmethod
    def from_wire(cls, message: tuple[Any, ...]) -> ShadowJob:
        """The job :func:`job_message` encoded."""
        job_id, target, sql, parameters, primary, seconds, judge = message
        return cls(job_id, Target(target), sql, parameters, primary, seconds, judge)


def job_message(
    job_id: int,
    primary_target: Target,
    sql: str,
    parameters: Any,
    primary: RawRows,
    primary_seconds: float,
    judge: str | None,
) -> tuple[Any, ...]:
    """A job as the plain tuple sent to the worker: the cheapest thing to build and pickle.

    Built on the caller's path, so not a :class:`ShadowJob` (the worker makes one).
    """
    return (job_id, primary_target.value, sql, parameters, primary, primary_seconds, judge)


_SCALARS = frozenset({type(None), bool, int, float, str, bytes, Decimal, date, timedelta, UUID})
#: Time zones the worker can read: an application's own tzinfo class would make it
#: import the application's module (it refuses to: the job would be sent for nothing).
_ZONES = frozenset({type(None), timezone, ZoneInfo})


class NotPortable(Exception):  # noqa: N818 - a reason, not an error: becomes a "skipped" count
    """Bind parameters the worker process could not read as they are."""


def snapshot(value: Any) -> Any:
    """``value`` (bind parameters) as it is now, for the worker; raises :class:`NotPortable`.

    The built-in types psycopg adapts, lists, tuples and dicts of them, and
    psycopg's JSON wrappers. Anything else (an application's own class, even
    with a psycopg dumper registered) would make the worker import the
    application's module to read it: such reads are not shadowed.

    Times and datetimes only with no time zone, a fixed offset or a ``ZoneInfo``.

    Containers are copied (scalars are immutable): the job is pickled later,
    on another thread, and the application may change a list it bound once
    the query has run; the shadow must run with the values the primary saw.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is datetime or kind is time:
        if type(value.tzinfo) in _ZONES:
            return value
        raise NotPortable
    if kind is list:
        return [snapshot(item) for item in value]
    if kind is tuple:
        return tuple([snapshot(item) for item in value])
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise NotPortable
            copied[key] = snapshot(item)
        return copied
    if (kind is Json or kind is Jsonb) and value.dumps is None:
        return kind(snapshot(value.obj))
    raise NotPortable
