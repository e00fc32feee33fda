"""The dbroute command line: `bucket`, `--version` and the demo."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

from dbroute import __version__, bucket
from dbroute.cli import main
from dbroute.demo import DemoContext, run_demo
from dbroute.demo.routing import routing_step
from dbroute.testing import DatabasePair


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_bucket_prints_bucket_and_threshold() -> None:
    code, out = invoke("bucket", "user-42")
    assert code == 0
    assert f"bucket: {bucket('user-42')}" in out
    assert "on RDS once the percentage is 17.88 or more" in out  # bucket 1787
    assert "target" not in out


@pytest.mark.parametrize(
    ("percent", "target"), [("17.87", "neon"), ("17.88", "rds"), ("100", "rds")]
)
def test_bucket_with_percent(percent: str, target: str) -> None:
    code, out = invoke("bucket", "user-42", "--percent", percent)
    assert code == 0
    assert f"target: {target}  at {percent} %" in out


def test_bucket_with_salt() -> None:
    code, out = invoke("bucket", "user-42", "--salt", "other")
    assert code == 0
    assert f"bucket: {bucket('user-42', 'other')}" in out


@pytest.mark.parametrize("percent", ["101", "1.234", "x"])
def test_bucket_rejects_bad_percent(percent: str) -> None:
    code, out = invoke("bucket", "k", "--percent", percent)
    assert code == 2
    assert "Invalid value for '--percent'" in out


def test_bucket_rejects_empty_key() -> None:
    code, out = invoke("bucket", "")
    assert code == 2
    assert "empty string" in out


def test_version() -> None:
    code, out = invoke("--version")
    assert code == 0
    assert __version__ in out


def test_routing_demo_step(dbroute_databases: DatabasePair) -> None:
    console = Console(record=True, width=120)
    run_demo(
        DemoContext(dbroute_databases.neon_url, dbroute_databases.rds_url, console, users=300),
        [routing_step],
    )
    out = console.export_text()
    assert "NO" not in out  # every row matched where its user was routed
    lines = [line for line in out.splitlines() if line.startswith("│ 100 ")]
    assert lines
    assert "│ 0 " in lines[0]  # at 100 % nobody is left on Neon


def test_demo_command_runs_end_to_end() -> None:
    # The README's main job, exactly as a user runs it (its own servers).
    result = subprocess.run(
        [sys.executable, "-m", "dbroute.cli", "demo", "--users", "100"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Routing: ramping users" in result.stdout
