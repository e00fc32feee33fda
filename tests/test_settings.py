"""RoutingSettings: environment parsing, validation messages and secrecy."""

from __future__ import annotations

import logging
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from dbroute import ConfigurationError, DBRouteError, Router, RoutingSettings, Target

SECRET = "s3cr3t-Pa55"
NEON = f"postgres://app:{SECRET}@ep-cool-1.eu-central-1.aws.neon.tech/app?sslmode=require"
RDS = f"postgresql://app:{SECRET}@app.abc123.eu-central-1.rds.amazonaws.com:5432/app"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("DBROUTE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("DBROUTE_NEON_URL", NEON)
    monkeypatch.setenv("DBROUTE_RDS_URL", RDS)
    return monkeypatch


def config_error(**values: object) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        RoutingSettings(**values)
    message = str(info.value)
    assert SECRET not in message
    assert SECRET not in repr(info.value)
    # The pydantic error (which quotes inputs) is not chained behind ours.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return info.value


def test_defaults_from_env(env: pytest.MonkeyPatch) -> None:
    settings = RoutingSettings()
    assert settings.rds_percent == 0
    assert settings.salt == "dbroute"
    assert settings.kill_switch is False
    assert settings.force_rds == frozenset()
    assert settings.url(Target.NEON).drivername == "postgresql+psycopg"
    assert settings.url(Target.RDS).port == 5432
    assert settings.url(Target.NEON).query == {"sslmode": "require"}
    # Serverless Neon: connections recycled quickly and pinged; RDS keeps them longer.
    assert settings.neon_pool.recycle == 300
    assert settings.neon_pool.pre_ping is True
    assert settings.rds_pool.recycle == 1800


def test_missing_urls_name_both_variables() -> None:
    error = config_error()
    assert "DBROUTE_NEON_URL: is required" in str(error)
    assert "DBROUTE_RDS_URL: is required" in str(error)
    assert isinstance(error, DBRouteError)
    assert not isinstance(error, ValidationError)


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://", "postgresql+psycopg://"])
def test_accepted_schemes_normalise_to_psycopg3(scheme: str) -> None:
    settings = RoutingSettings(neon_url=f"{scheme}u:{SECRET}@neon/db", rds_url=RDS)
    url = settings.url(Target.NEON)
    assert url.drivername == "postgresql+psycopg"
    assert url.password == SECRET


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"])
def test_other_schemes_are_refused(url: str) -> None:
    error = config_error(neon_url=url, rds_url=RDS)
    assert "DBROUTE_NEON_URL: has scheme" in str(error)
    assert "postgresql://" in str(error)


def test_unparseable_url_does_not_leak_it() -> None:
    error = config_error(neon_url=f"::not a url {SECRET}", rds_url=RDS)
    assert "DBROUTE_NEON_URL: is not a valid URL" in str(error)


def test_same_database_twice_is_refused() -> None:
    error = config_error(neon_url=RDS, rds_url=RDS.replace("postgresql://", "postgres://"))
    assert "point at the same database" in str(error)


def test_same_database_without_port_or_in_other_case_is_refused() -> None:
    # libpq's default port and case-insensitive host names: still the same database.
    same = RDS.replace(":5432", "").replace("app.abc123", "APP.abc123")
    error = config_error(neon_url=same, rds_url=RDS)
    assert "point at the same database" in str(error)


@pytest.mark.parametrize("value", ["0", "0.01", "12.5", "100"])
def test_percent_accepts_basis_points(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("DBROUTE_RDS_PERCENT", value)
    assert RoutingSettings().rds_percent == Decimal(value)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("-1", "greater than or equal to 0"),
        ("100.01", "less than or equal to 100"),
        ("1.234", "no more than 2 decimal places"),
        ("lots", "valid decimal"),
    ],
)
def test_percent_errors_name_variable_and_rule(
    env: pytest.MonkeyPatch, value: str, rule: str
) -> None:
    env.setenv("DBROUTE_RDS_PERCENT", value)
    error = config_error()
    assert "DBROUTE_RDS_PERCENT" in str(error)
    assert rule in str(error)


def test_force_lists_are_comma_separated(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_FORCE_RDS", " qa-1, qa-2 ,,")
    env.setenv("DBROUTE_FORCE_NEON", "vip-7")
    settings = RoutingSettings()
    assert settings.force_rds == {"qa-1", "qa-2"}
    assert settings.force_neon == {"vip-7"}


def test_key_forced_both_ways_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_FORCE_RDS", "a,b")
    env.setenv("DBROUTE_FORCE_NEON", "b,c")
    assert "['b']" in str(config_error())


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("off", False)])
def test_kill_switch_parses_booleans(env: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    env.setenv("DBROUTE_KILL_SWITCH", value)
    assert RoutingSettings().kill_switch is expected


def test_bad_boolean_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_KILL_SWITCH", "maybe")
    assert "DBROUTE_KILL_SWITCH" in str(config_error())


def test_nested_pool_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_NEON_POOL__SIZE", "20")
    env.setenv("DBROUTE_RDS_POOL__PRE_PING", "false")
    settings = RoutingSettings()
    assert settings.neon_pool.size == 20
    assert settings.neon_pool.recycle == 300  # other Neon defaults kept
    assert settings.rds_pool.pre_ping is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DBROUTE_NEON_POOL__SIZE", "0", "DBROUTE_NEON_POOL__SIZE: Input should be greater"),
        ("DBROUTE_RDS_POOL__TIMEOUT", "soon", "DBROUTE_RDS_POOL__TIMEOUT"),
        ("DBROUTE_RDS_POOL__SIZEE", "3", "DBROUTE_RDS_POOL__SIZEE: Extra inputs"),
    ],
)
def test_bad_pool_values_are_named(
    env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    env.setenv(variable, value)
    assert expected in str(config_error())


def test_unknown_variable_is_refused_with_a_hint(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_RDS_PERCNT", "5")
    error = config_error()
    assert "DBROUTE_RDS_PERCNT: is not a dbroute setting" in str(error)
    assert "did you mean DBROUTE_RDS_PERCENT?" in str(error)


def test_nested_variable_under_a_plain_setting_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_KILL_SWITCH__ENABLED", "true")
    error = config_error()
    assert "DBROUTE_KILL_SWITCH__ENABLED: is not a dbroute setting" in str(error)
    assert "did you mean DBROUTE_KILL_SWITCH?" in str(error)


def test_test_harness_variables_are_not_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_TEST_NEON_URL", "postgresql://x/y")
    assert RoutingSettings().rds_percent == 0


def test_keyword_arguments_override_env(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_RDS_PERCENT", "5")
    assert RoutingSettings(rds_percent=7).rds_percent == 7


def test_settings_are_immutable(env: pytest.MonkeyPatch) -> None:
    settings = RoutingSettings()
    with pytest.raises(ValidationError):
        settings.rds_percent = Decimal(50)  # type: ignore[misc]


def test_secrets_stay_out_of_reprs_dumps_and_logs(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = RoutingSettings()
    caplog.set_level(logging.DEBUG, logger="dbroute")
    router = Router(settings)
    try:
        for text in (
            repr(settings),
            str(settings),
            settings.model_dump_json(),
            repr(router),
            str(settings.url(Target.NEON)),
            repr(settings.url(Target.RDS)),
            caplog.text,
        ):
            assert SECRET not in text
        assert "***" in repr(router)
        assert "rds.amazonaws.com" in caplog.text  # the log does say where it connects
    finally:
        router.dispose()


def test_shadow_python_must_be_an_executable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("DBROUTE_SHADOW_PYTHON", str(tmp_path / "no-such-python"))
    error = config_error()
    assert "DBROUTE_SHADOW_PYTHON" in str(error)
    assert "not an executable file" in str(error)
    env.setenv("DBROUTE_SHADOW_PYTHON", sys.executable)
    assert RoutingSettings().shadow_python == sys.executable


def test_shadow_reads_are_refused_on_windows(env: pytest.MonkeyPatch) -> None:
    env.setattr(sys, "platform", "win32")
    env.setenv("DBROUTE_SHADOW_READ_PERCENT", "5")
    assert "shadow reads need Linux or macOS" in str(config_error())
    env.setenv("DBROUTE_SHADOW_READ_PERCENT", "0")
    assert RoutingSettings().shadow_read_percent == 0


NEON_POOLER = NEON.replace("ep-cool-1.", "ep-cool-1-pooler.")
RDS_PROXY = RDS.replace("app.abc123.", "app.proxy-abc123.")


@pytest.mark.parametrize(
    ("variable", "url", "pooler", "hint"),
    [
        ("DBROUTE_NEON_URL", NEON_POOLER, "Neon's connection pooler", "without -pooler"),
        ("DBROUTE_RDS_URL", RDS_PROXY, "RDS Proxy", "DBROUTE_RDS_MIRROR_URL"),
    ],
)
def test_dual_write_refuses_to_mirror_through_a_transaction_pooler(
    env: pytest.MonkeyPatch, variable: str, url: str, pooler: str, hint: str
) -> None:
    env.setenv(variable, url)
    assert RoutingSettings().url(Target.NEON).host  # routing alone may use the pooler
    env.setenv("DBROUTE_DUAL_WRITE", "true")
    message = str(config_error())
    assert f"{variable} goes through {pooler}" in message
    assert "session settings" in message
    assert hint in message
    env.delenv("DBROUTE_DUAL_WRITE")
    env.setenv("DBROUTE_PHASE_POLL_SECONDS", "5")  # a followed phase may turn dual-write on
    assert pooler in str(config_error())
    env.setenv("DBROUTE_PHASE", "neon_only")  # pinned: no dual-write, the pooler is fine
    assert RoutingSettings().dual_write is False


def test_a_mirror_url_takes_dual_write_past_the_pooler(env: pytest.MonkeyPatch) -> None:
    env.setenv("DBROUTE_NEON_URL", NEON_POOLER)
    env.setenv("DBROUTE_DUAL_WRITE", "true")
    env.setenv("DBROUTE_NEON_MIRROR_URL", NEON)  # the direct endpoint
    settings = RoutingSettings()
    assert settings.url(Target.NEON).host == "ep-cool-1-pooler.eu-central-1.aws.neon.tech"
    assert settings.mirror_url(Target.NEON).host == "ep-cool-1.eu-central-1.aws.neon.tech"
    assert settings.mirror_url(Target.NEON).drivername == "postgresql+psycopg"
    assert settings.mirror_url(Target.RDS) == settings.url(Target.RDS)  # the default
    assert SECRET not in repr(settings)
    env.setenv("DBROUTE_NEON_MIRROR_URL", NEON_POOLER)  # the mirror URL is checked too
    assert "DBROUTE_NEON_MIRROR_URL goes through Neon's" in str(config_error())
