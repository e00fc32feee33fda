"""Running routers follow the stored phase without a restart."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from dbroute.errors import PhaseStoreError
from dbroute.phases.model import Phase
from dbroute.target import Target

from .helpers import force_phase

POLL_SECONDS = 1.0
# Scheduling slack on a loaded 2-core machine; the bound checked is POLL_SECONDS + SLACK.
SLACK = 2.0


def test_a_router_starts_on_the_stored_phase_and_follows_changes(control, make_router):
    force_phase(control, Phase.DUAL_WRITE)
    force_phase(control, Phase.RAMP, Decimal(100))
    # A long interval keeps the background thread out of the way: the test
    # calls refresh(), which is what the thread runs each interval.
    router = make_router(phase_poll_seconds=600)
    state = router.routing_state
    assert (state.phase, state.rds_percent, state.dual_write) == (Phase.RAMP, 100, True)
    assert router.target_for("user-1") is Target.RDS
    force_phase(control, Phase.RAMP, Decimal(0))
    poller = router._phase_poller
    assert poller is not None
    assert poller.refresh() is True
    assert router.target_for("user-1") is Target.NEON
    assert poller.refresh() is False  # nothing new
    router.dispose()
    assert not poller._thread.is_alive()


def test_a_pinned_phase_ignores_the_store(control, make_router):
    force_phase(control, Phase.DUAL_WRITE)
    router = make_router(phase="neon_only", phase_poll_seconds=0.2)
    assert router._phase_poller is None
    assert router.routing_state.phase is Phase.NEON_ONLY


def test_without_any_database_the_router_refuses_to_start(make_router):
    from dbroute import Router, RoutingSettings

    settings = RoutingSettings(
        neon_url="postgresql://u@127.0.0.1:1/a",
        rds_url="postgresql://u@127.0.0.1:1/b",
        phase_poll_seconds=1,
        neon_pool={"connect_timeout": 1},
        rds_pool={"connect_timeout": 1},
    )
    with pytest.raises(PhaseStoreError, match="either database"):
        Router(settings)


def _start_app(env: dict[str, str], runtime: float) -> tuple[subprocess.Popen[str], queue.Queue]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("app_process.py")), str(runtime)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(json.loads(line))

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def _next(lines: queue.Queue, process: subprocess.Popen[str], timeout: float = 30) -> dict:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        raise AssertionError(f"app process said nothing: {process.stderr.read()}") from None


def test_two_app_processes_see_a_phase_change_within_the_poll_interval(control, dbroute_databases):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBROUTE_")}
    env |= {
        "DBROUTE_NEON_URL": dbroute_databases.neon_url,
        "DBROUTE_RDS_URL": dbroute_databases.rds_url,
        "DBROUTE_PHASE_POLL_SECONDS": str(POLL_SECONDS),
    }
    apps = [_start_app(env, runtime=40) for _ in range(2)]
    try:
        for process, lines in apps:
            first = _next(lines, process)
            assert (first["phase"], first["version"], first["target"]) == ("neon_only", 0, "neon")
        for phase, percent, version, target in (
            (Phase.DUAL_WRITE, None, 1, "neon"),
            (Phase.RAMP, Decimal(100), 2, "rds"),
        ):
            force_phase(control, phase, percent)
            changed_at = time.monotonic()
            for process, lines in apps:
                seen = _next(lines, process, timeout=POLL_SECONDS + 20)
                assert (seen["phase"], seen["version"], seen["target"]) == (
                    phase.value,
                    version,
                    target,
                )
                assert seen["dual_write"] is True
                assert seen["at"] - changed_at <= POLL_SECONDS + SLACK
    finally:
        for process, _ in apps:
            process.kill()
            process.wait()
