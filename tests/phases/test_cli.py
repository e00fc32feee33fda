"""dbroute status / advance / rollback from the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dbroute.cli import main
from dbroute.phases.model import Phase
from dbroute.target import Target

from .helpers import plant_journal_entry


@pytest.fixture
def cli(dbroute_databases, monkeypatch):
    monkeypatch.setenv("DBROUTE_NEON_URL", dbroute_databases.neon_url)
    monkeypatch.setenv("DBROUTE_RDS_URL", dbroute_databases.rds_url)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args))


def test_status_human_and_json(cli):
    result = cli("status")
    assert result.exit_code == 0, result.output
    for expected in (
        "phase: neon_only",
        "connect latency",
        "server version",
        "journal backlog",
        "sequences without room",
        "last validation",
    ):
        assert expected in result.output
    data = json.loads(cli("status", "--json").output)
    assert data["phase"] == "neon_only"
    assert data["version"] == 0
    assert data["health"]["neon"]["ok"]
    assert data["health"]["rds"]["ok"]
    zero = {"settled": 0, "total": 0}
    assert data["journal_backlog"] == {"neon": zero, "rds": zero}
    assert data["last_validation"] is None
    assert data["sequences_without_room"] == {"neon": [], "rds": []}


def test_advance_is_a_dry_run_by_default(cli, control):
    result = cli("advance", "--to", "dual_write")
    assert result.exit_code == 0, result.output
    assert "health:neon" in result.output
    assert "dry run" in result.output
    assert control.current().current.phase is Phase.NEON_ONLY
    result = cli("advance", "--to", "dual_write", "--execute")
    assert result.exit_code == 2
    assert "--reason" in result.output
    result = cli("advance", "--to", "dual_write", "--execute", "--reason", "OPS-7", "--by", "eve")
    assert result.exit_code == 0, result.output
    stored = control.current().current
    assert (stored.phase, stored.changed_by, stored.reason) == (Phase.DUAL_WRITE, "eve", "OPS-7")
    history = json.loads(cli("status", "--json").output)["history"]
    assert history[0]["to"] == "dual_write"
    assert history[0]["reason"] == "OPS-7"


def test_refusal_exits_non_zero_and_lists_the_failed_check(cli, control):
    cli("advance", "--to", "dual_write", "--execute", "--reason", "start")
    plant_journal_entry(control.engines[Target.NEON])
    result = cli("advance", "--to", "ramp", "--percent", "5", "--execute", "--reason", "go")
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert "backlog:neon" in result.output
    assert "refused" in result.output
    data = json.loads(cli("advance", "--to", "ramp", "--percent", "5", "--json").output)
    assert data["allowed"] is False
    assert data["executed"] is False
    assert {c["name"] for c in data["checks"] if not c["ok"]} >= {"backlog:neon", "validation"}
    assert control.current().current.phase is Phase.DUAL_WRITE


def test_wrong_moves_are_explained(cli):
    result = cli("advance", "--to", "ramp")
    assert result.exit_code == 1
    assert "skips phases" in result.output
    result = cli("rollback", "--to", "dual_write")
    assert result.exit_code == 1
    assert "use `dbroute advance --to dual_write`" in result.output
    result = cli("advance", "--to", "ramp", "--percent", "150")
    assert result.exit_code == 2
    assert "0-100" in result.output
