"""``dbroute validate`` and ``dbroute sequences sync`` end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dbroute.cli import main
from dbroute.cli.validate import DIFFERENCES_EXIT

from .validate_helpers import Pair

DDL = """
create table t (id bigserial primary key, v text);
insert into t (v) select 'v' || g from generate_series(1, 50) g;
"""


@pytest.fixture
def env(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Pair:
    monkeypatch.setenv("DBROUTE_NEON_URL", pair.urls.neon_url)
    monkeypatch.setenv("DBROUTE_RDS_URL", pair.urls.rds_url)
    return pair


def test_equal_databases_exit_zero(env: Pair) -> None:
    env.both(DDL)
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0, result.output
    assert "schema: no differences" in result.output
    assert "data: equal" in result.output


def test_differences_json_repair_and_record(env: Pair) -> None:
    env.both(DDL)
    env.run(env.rds, "update t set v = '' where id = 3; delete from t where id = 4")
    runner = CliRunner()
    result = runner.invoke(main, ["validate", "--data-only", "--json"])
    assert result.exit_code == DIFFERENCES_EXIT
    report = json.loads(result.stdout)
    table = report["data"]["tables"][0]
    assert table["changed"] == [{"key": ["3"], "columns": ["v"]}]
    assert table["only_in_neon"] == [["4"]]

    dry = runner.invoke(main, ["validate", "--data-only", "--from", "neon"])
    assert dry.exit_code == DIFFERENCES_EXIT
    assert "would repair" in dry.output
    assert "1 upserts, 1 deletes" not in dry.output
    assert "2 upserts, 0 deletes" in dry.output

    fixed = runner.invoke(main, ["validate", "--data-only", "--repair", "--from", "neon", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["repair"]["verified"] is True

    again = runner.invoke(main, ["validate", "--record", "--who", "cron", "--table", "public.t"])
    assert again.exit_code == 0, again.output
    assert env.rows(env.rds, "select clean, who from dbroute.validation_runs") == [(True, "cron")]


def test_usage_errors(env: Pair) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["validate", "--repair"]).exit_code == 2
    assert runner.invoke(main, ["validate", "--since", "nonsense"]).exit_code == 2
    assert runner.invoke(main, ["validate", "--schema-only", "--data-only"]).exit_code == 2
    missing = runner.invoke(main, ["validate", "--table", "nope"])
    assert missing.exit_code == 1
    assert "ConfigurationError" in missing.output


def test_schema_only(env: Pair) -> None:
    env.both(DDL)
    env.run(env.rds, "alter table t add column extra int")
    result = CliRunner().invoke(main, ["validate", "--schema-only"])
    assert result.exit_code == DIFFERENCES_EXIT
    assert "column only on rds" in result.output
    assert "Data comparison" not in result.output


def test_sequences_sync(env: Pair) -> None:
    env.both("create table s (id bigserial primary key)")
    env.run(env.rds, "insert into s (id) values (41)")
    runner = CliRunner()
    dry = runner.invoke(main, ["sequences", "sync", "--from", "neon", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)[0]["after"] == 42
    done = runner.invoke(main, ["sequences", "sync", "--from", "neon"])
    assert done.exit_code == 0
    assert "1 of 1 sequences moved" in done.output
    again = runner.invoke(main, ["sequences", "sync", "--from", "neon"])
    assert "0 of 1 sequences moved" in again.output
