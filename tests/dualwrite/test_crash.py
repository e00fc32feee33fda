"""Crash: a writer process SIGKILLed mid-workload; a later replay converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.dualwrite.support import assert_converged, kv_rows

from dbroute.target import Target

WRITER = Path(__file__).with_name("crash_writer.py")


def _writer(databases, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), databases.neon_url, databases.rds_url, *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _replay_until_writers_gone(router) -> None:
    # The killed writer's transaction is aborted once its server notices the
    # dropped connection; until then its intent rows wait (report.skipped).
    deadline = time.monotonic() + 30
    while router.replay().skipped and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.parametrize("committed", [25, 60])
def test_sigkill_at_a_random_moment(dual_router, dbroute_databases, committed):
    process = _writer(dbroute_databases)
    try:
        assert process.stdout is not None
        for _ in range(committed):
            assert process.stdout.readline(), "the writer died by itself"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    neon = kv_rows(dual_router.engine(Target.NEON))
    assert len(neon) >= committed  # what it reported committed is there
    _replay_until_writers_gone(dual_router)
    assert_converged(dual_router)
    assert kv_rows(dual_router.engine(Target.RDS)) == neon


def test_sigkill_between_secondary_commit_and_primary_commit(dual_router, dbroute_databases):
    process = _writer(dbroute_databases, "20")
    assert process.wait(60) == -signal.SIGKILL
    assert process.stdout is not None
    assert len(process.stdout.read().split()) == 19
    with dual_router.engine(Target.RDS).connect() as conn:  # the 20th reached RDS only
        assert conn.execute(text("select count(*) from kv")).scalar_one() == 20
    _replay_until_writers_gone(dual_router)
    assert_converged(dual_router)
    assert len(kv_rows(dual_router.engine(Target.RDS))) == 19
