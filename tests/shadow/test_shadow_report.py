"""The report's aggregation: counts per verdict, percentiles, bounded memory (pure units)."""

from __future__ import annotations

from dbroute import Target
from dbroute.shadow import ShadowOutcome, Verdict
from dbroute.shadow.report import LATENCY_SAMPLES, MAX_STATEMENTS, ReportBuilder


def outcome(fingerprint="f1", verdict=Verdict.MATCH, primary=0.001, shadow=0.002):
    return ShadowOutcome(
        fingerprint, f"select {fingerprint}", Target.NEON, Target.RDS, verdict, primary, shadow
    )


def test_counts_and_percentiles_per_statement():
    builder = ReportBuilder()
    for n in range(1, 101):
        builder.add(outcome(primary=n / 1000, shadow=n / 100))
    builder.add(outcome(verdict=Verdict.MISMATCH))
    builder.add(outcome(verdict=Verdict.ERROR, shadow=None))
    builder.add(outcome("f2", Verdict.LAGGED))
    builder.skip("locking")
    builder.drop(3)
    report = builder.snapshot()
    row = report.statement("f1")
    assert (row.compared, row.matched, row.mismatched, row.errors) == (101, 100, 1, 1)
    assert row.primary_p50 == 0.05  # nearest rank over 102 samples (three of 1 ms)
    assert row.shadow_p99 == 0.99  # errors have no shadow latency: 101 samples
    assert (report.compared, report.mismatched, report.lagged, report.errors) == (102, 1, 1, 1)
    assert (report.skipped, report.dropped) == ({"locking": 1}, 3)


def test_memory_is_bounded():
    builder = ReportBuilder()
    for n in range(MAX_STATEMENTS + 50):
        builder.add(outcome(f"s{n}"))
    for _ in range(LATENCY_SAMPLES * 2):
        builder.add(outcome("s0"))
    report = builder.snapshot()
    assert len(report.statements) == MAX_STATEMENTS + 1  # the rest folded into "other"
    assert report.statement("other").compared == 50
    assert report.compared == MAX_STATEMENTS + 50 + LATENCY_SAMPLES * 2
    assert len(builder._statements["s0"].primary) == LATENCY_SAMPLES
