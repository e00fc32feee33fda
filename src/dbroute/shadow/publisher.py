"""Where shadow outcomes go: OpenTelemetry, the report, the log, and the user's callbacks.

Runs on dbroute's background threads (the reader of the worker's results, the
local judges), never on the caller's path, except :meth:`Publisher.skipped`
and :meth:`Publisher.dropped`, which are two counter increments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from dbroute.shadow.judge import outcome_of
from dbroute.shadow.outcome import ShadowMismatch, ShadowOutcome, Verdict
from dbroute.shadow.report import ReportBuilder
from dbroute.shadow.statement import StatementInfo
from dbroute.target import Target
from dbroute.telemetry import (
    ATTR_ERROR_TYPE,
    ATTR_SHADOW_REASON,
    ATTR_SHADOW_SIDE,
    ATTR_TARGET,
    SHADOW_COMPARED,
    SHADOW_DROPPED,
    SHADOW_DURATION,
    SHADOW_ERRORS,
    SHADOW_LAGGED,
    SHADOW_MATCHED,
    SHADOW_MISMATCHED,
    SHADOW_SKIPPED,
)

__all__ = ["Publisher"]

log = logging.getLogger("dbroute.shadow")

_VERDICT_COUNTERS = {
    Verdict.MATCH: SHADOW_MATCHED,
    Verdict.MISMATCH: SHADOW_MISMATCHED,
    Verdict.LAGGED: SHADOW_LAGGED,
}


class Publisher:
    """Metrics, report, log records and callbacks for one router's shadow reads."""

    def __init__(self) -> None:
        self.report = ReportBuilder()
        self.publishers: list[Callable[[ShadowOutcome], None]] = []
        self.on_mismatch: list[Callable[[ShadowMismatch], None]] = []

    def skipped(self, reason: str) -> None:
        """Count a read not shadowed."""
        self.report.skip(reason)
        SHADOW_SKIPPED.add(1, {ATTR_SHADOW_REASON: reason})

    def dropped(self, count: int, reason: str) -> None:
        """Count sampled reads that were not compared (queue full, shutdown, worker died)."""
        self.report.drop(count)
        SHADOW_DROPPED.add(count, {ATTR_SHADOW_REASON: reason})

    def matches(
        self,
        info: StatementInfo,
        primary_value: str,
        primary_seconds: list[float],
        shadow_seconds: list[float],
    ) -> None:
        """Matches of one statement, the bulk of shadow reads: recorded together."""
        attributes = {ATTR_TARGET: Target(primary_value).other.value}
        SHADOW_COMPARED.add(len(primary_seconds), attributes)
        SHADOW_MATCHED.add(len(primary_seconds), {**attributes, ATTR_SHADOW_REASON: "none"})
        for side, values in (("primary", primary_seconds), ("shadow", shadow_seconds)):
            record, side_attributes = SHADOW_DURATION.record, {**attributes, ATTR_SHADOW_SIDE: side}
            for seconds in values:
                record(seconds, side_attributes)
        self.report.add_matches(info.fingerprint, info.normalized, primary_seconds, shadow_seconds)
        if self.publishers:
            target = Target(primary_value)
            for primary, shadow in zip(primary_seconds, shadow_seconds, strict=True):
                match = outcome_of(info, target, Verdict.MATCH, primary, shadow)
                self._call(self.publishers, match)

    def outcome(self, result: ShadowOutcome) -> None:
        """Record one shadow read that did not simply match (or any, when it is all we have)."""
        attributes = {ATTR_TARGET: result.shadow.value}
        if result.verdict is Verdict.ERROR:
            self._log_error(result)
        else:
            SHADOW_COMPARED.add(1, attributes)
            counter = _VERDICT_COUNTERS.get(result.verdict)
            if counter is not None:
                reason = result.difference.value if result.difference else "none"
                counter.add(1, {**attributes, ATTR_SHADOW_REASON: reason})
            SHADOW_DURATION.record(
                result.primary_seconds, {**attributes, ATTR_SHADOW_SIDE: "primary"}
            )
            if result.shadow_seconds is not None:
                SHADOW_DURATION.record(
                    result.shadow_seconds, {**attributes, ATTR_SHADOW_SIDE: "shadow"}
                )
        if result.mismatch is not None:
            _log_mismatch(result.mismatch)
            self._call(self.on_mismatch, result.mismatch)
        self.report.add(result)
        self._call(self.publishers, result)

    def _log_error(self, result: ShadowOutcome) -> None:
        error_type = result.error_type or "Exception"
        SHADOW_ERRORS.add(1, {ATTR_TARGET: result.shadow.value, ATTR_ERROR_TYPE: error_type})
        # The message of a database error can quote row values: log the type only.
        log.warning(
            "shadow read failed on %s: %s (statement %s)",
            result.shadow.value,
            error_type,
            result.fingerprint,
            extra={"dbroute_shadow": {"fingerprint": result.fingerprint, "error": error_type}},
        )

    def _call(self, functions: list[Callable[[Any], None]], argument: object) -> None:
        for function in functions:
            try:
                function(argument)
            except Exception as exc:
                SHADOW_ERRORS.add(1, {ATTR_ERROR_TYPE: type(exc).__name__})
                log.exception("shadow read: callback %r raised", function)


def _log_mismatch(mismatch: ShadowMismatch) -> None:
    fields: Mapping[str, Any] = {
        "fingerprint": mismatch.fingerprint,
        "statement": mismatch.statement,
        "primary": mismatch.primary.value,
        "shadow": mismatch.shadow.value,
        "difference": mismatch.difference.value,
        "primary_rows": mismatch.primary_rows,
        "shadow_rows": mismatch.shadow_rows,
        "first_difference": mismatch.first_difference,
    }
    log.warning(
        "shadow read mismatch %s (%s): %s=%d rows, %s=%d rows, first difference at row %s: %s",
        mismatch.fingerprint,
        mismatch.difference.value,
        mismatch.primary.value,
        mismatch.primary_rows,
        mismatch.shadow.value,
        mismatch.shadow_rows,
        mismatch.first_difference,
        mismatch.statement,
        extra={"dbroute_shadow": fields},
    )
