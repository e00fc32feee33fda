"""Shadow reads: re-run a sample of session reads on the other database and compare.

Switched on by ``DBROUTE_SHADOW_READ_PERCENT > 0``; the router then attaches
:class:`ShadowReads` (``router.shadow``). The caller's result is never touched;
its only cost is copying the primary's raw answer to a worker process, where
the shadow runs read-only, with its own timeout and row cap, and is compared.
See ``docs/shadow-reads.md``.
"""

from dbroute.shadow.compare import Comparison, Difference, compare_results
from dbroute.shadow.experiment import ShadowReads
from dbroute.shadow.job import OPT_COMPARE, OPT_IGNORE, OPT_OUT
from dbroute.shadow.outcome import ShadowMismatch, ShadowOutcome, Verdict
from dbroute.shadow.report import ShadowReport, StatementStats
from dbroute.shadow.results import Column, ResultSet
from dbroute.shadow.statement import StatementInfo, StatementKind, analyse

__all__ = [
    "OPT_COMPARE",
    "OPT_IGNORE",
    "OPT_OUT",
    "Column",
    "Comparison",
    "Difference",
    "ResultSet",
    "ShadowMismatch",
    "ShadowOutcome",
    "ShadowReads",
    "ShadowReport",
    "StatementInfo",
    "StatementKind",
    "StatementStats",
    "Verdict",
    "analyse",
    "compare_results",
]
