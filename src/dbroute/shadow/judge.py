"""From two results to a verdict: built-in comparison, the user's callables, then lag.

Used in two places: the worker process judges every shadow read whose
statement has no user callable; the application's process finishes the
judgement of those that do (:class:`Judgement`), since user callables cannot
cross processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dbroute.shadow.compare import Comparison, Difference, compare_results
from dbroute.shadow.job import Comparator
from dbroute.shadow.outcome import ShadowMismatch, ShadowOutcome, Verdict
from dbroute.shadow.results import ResultSet
from dbroute.shadow.statement import StatementInfo
from dbroute.target import Target

__all__ = [
    "Judgement",
    "LagCheck",
    "builtin",
    "conclude",
    "error_outcome",
    "outcome",
    "outcome_of",
    "verdict",
]

#: ``lag(comparison) -> bool``: whether a difference is replication lag.
LagCheck = Callable[[Comparison], bool]


@dataclass(frozen=True, slots=True)
class Judgement:
    """Everything known about one shadow read before its verdict.

    The worker sends it back to the application when the user's callables must
    decide (they cannot cross processes).
    """

    job_id: int
    info: StatementInfo
    sql: str
    parameters: Any
    primary_target: Target
    primary_seconds: float
    shadow_seconds: float
    primary: ResultSet
    shadow: ResultSet
    comparison: Comparison


def verdict(
    primary: ResultSet,
    shadow: ResultSet,
    comparison: Comparison,
    *,
    compare: Comparator | None,
    ignores: Sequence[Comparator],
    lag: LagCheck,
) -> tuple[Verdict, Comparison]:
    """Scientist's order: ``compare`` (or the built-in one), then ``ignore``, then lag."""
    if compare is not None:
        if compare(primary, shadow):
            return Verdict.MATCH, Comparison(None)
        if comparison.equal:  # the user's rule is stricter than ours
            comparison = Comparison(Difference.VALUES)
    elif comparison.equal:
        return Verdict.MATCH, comparison
    if any(ignore(primary, shadow) for ignore in ignores):
        return Verdict.IGNORED, comparison
    return (Verdict.LAGGED if lag(comparison) else Verdict.MISMATCH), comparison


def conclude(
    judgement: Judgement,
    *,
    compare: Comparator | None,
    ignores: Sequence[Comparator],
    is_lag: Callable[..., bool],
    include_values: bool,
) -> ShadowOutcome:
    """The outcome of ``judgement`` under ``compare`` and ``ignores``; lag checked by ``is_lag``.

    ``is_lag`` is :meth:`~dbroute.shadow.lag.LagExplainer.is_lag`. A callable or
    a lag lookup that raises makes an ``error`` outcome.
    """
    j = judgement
    try:
        judged = verdict(
            j.primary,
            j.shadow,
            j.comparison,
            compare=compare,
            ignores=ignores,
            lag=lambda difference: is_lag(
                primary_target=j.primary_target,
                sql=j.sql,
                parameters=j.parameters,
                ordered=j.info.ordered,
                primary=j.primary,
                shadow=j.shadow,
                comparison=difference,
            ),
        )
    except Exception as exc:
        return error_outcome(j.info, j.primary_target, j.primary_seconds, type(exc).__name__)
    return outcome(
        info=j.info,
        primary_target=j.primary_target,
        primary_seconds=j.primary_seconds,
        shadow_seconds=j.shadow_seconds,
        primary=j.primary,
        shadow=j.shadow,
        judged=judged,
        include_values=include_values,
    )


def builtin(
    primary: ResultSet, shadow: ResultSet, info: StatementInfo, float_tolerance: float
) -> Comparison:
    """The built-in comparison of the two results."""
    return compare_results(primary, shadow, ordered=info.ordered, float_tolerance=float_tolerance)


def outcome(
    *,
    info: StatementInfo,
    primary_target: Target,
    primary_seconds: float,
    shadow_seconds: float,
    primary: ResultSet,
    shadow: ResultSet,
    judged: tuple[Verdict, Comparison],
    include_values: bool,
) -> ShadowOutcome:
    """The :class:`ShadowOutcome` of a judged read (with its :class:`ShadowMismatch`, if any)."""
    result, comparison = judged
    mismatch = None
    if result is Verdict.MISMATCH:
        mismatch = _mismatch(info, primary_target, primary, shadow, comparison, include_values)
    return ShadowOutcome(
        fingerprint=info.fingerprint,
        statement=info.normalized,
        primary=primary_target,
        shadow=primary_target.other,
        verdict=result,
        primary_seconds=primary_seconds,
        shadow_seconds=shadow_seconds,
        difference=comparison.difference,
        mismatch=mismatch,
    )


def error_outcome(
    info: StatementInfo, primary_target: Target, primary_seconds: float, error_type: str
) -> ShadowOutcome:
    """The outcome of a shadow read that failed (``error_type``: the exception's class name)."""
    return outcome_of(info, primary_target, Verdict.ERROR, primary_seconds, None, error_type)


def outcome_of(
    info: StatementInfo,
    primary_target: Target,
    verdict: Verdict,
    primary_seconds: float,
    shadow_seconds: float | None,
    error_type: str | None = None,
) -> ShadowOutcome:
    """A :class:`ShadowOutcome` without a mismatch: a match, or an error."""
    return ShadowOutcome(
        fingerprint=info.fingerprint,
        statement=info.normalized,
        primary=primary_target,
        shadow=primary_target.other,
        verdict=verdict,
        primary_seconds=primary_seconds,
        shadow_seconds=shadow_seconds,
        error_type=error_type,
    )


def _mismatch(
    info: StatementInfo,
    primary_target: Target,
    primary: ResultSet,
    shadow: ResultSet,
    comparison: Comparison,
    include_values: bool,
) -> ShadowMismatch:
    assert comparison.difference is not None
    primary_row = shadow_row = None
    first = comparison.first_difference
    if include_values and first is not None:
        if first < len(primary.rows):
            primary_row = tuple(primary.rows[first])
        unmatched = comparison.shadow_unmatched
        index = first if info.ordered else (unmatched[0] if unmatched else None)
        if index is not None and index < len(shadow.rows):
            shadow_row = tuple(shadow.rows[index])
    return ShadowMismatch(
        fingerprint=info.fingerprint,
        statement=info.normalized,
        primary=primary_target,
        shadow=primary_target.other,
        difference=comparison.difference,
        primary_rows=len(primary.rows),
        shadow_rows=len(shadow.rows),
        first_difference=first,
        primary_row=primary_row,
        shadow_row=shadow_row,
    )
