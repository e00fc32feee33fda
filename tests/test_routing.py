"""Router.target_for / decide: pure routing, no database needed (engines connect lazily)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbroute import InvalidKeyError, Reason, Router, RoutingSettings, Target, bucket
from dbroute.bucketing import threshold

URLS = {
    "neon_url": "postgresql://app@neon.invalid/app",
    "rds_url": "postgresql://app@rds.invalid/app",
}
PERCENTS = [Decimal(p) for p in ("0", "0.01", "0.1", "1", "5", "33.33", "50", "99.99", "100")]
keys = st.one_of(st.text(min_size=1, max_size=30), st.integers())


@pytest.fixture(scope="module")
def build() -> Iterator[Callable[..., Router]]:
    routers: list[Router] = []

    def make(**overrides: Any) -> Router:
        router = Router(RoutingSettings(**URLS, **overrides))
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.dispose()


@pytest.fixture(scope="module")
def ramp(build: Callable[..., Router]) -> list[Router]:
    return [build(rds_percent=p) for p in PERCENTS]


@given(key=keys)
def test_target_follows_the_bucket(ramp: list[Router], key: str | int) -> None:
    for router in ramp:
        expected = (
            Target.RDS if bucket(key) < threshold(router.settings.rds_percent) else Target.NEON
        )
        assert router.target_for(key) is expected


@given(key=keys)
def test_ramp_only_moves_neon_to_rds(ramp: list[Router], key: str | int) -> None:
    targets = [router.target_for(key) for router in ramp]
    assert targets[0] is Target.NEON
    assert targets[-1] is Target.RDS
    first_rds = targets.index(Target.RDS)
    assert all(t is Target.RDS for t in targets[first_rds:])


@given(
    key=keys,
    forced=st.sampled_from(["rds", "neon", None]),
    kill=st.booleans(),
    percent=st.sampled_from(PERCENTS),
)
def test_override_precedence(
    build: Callable[..., Router], key: str | int, forced: str | None, kill: bool, percent: Decimal
) -> None:
    text = str(key)
    router = _cached(build, percent, kill, forced, text)
    decision = router.decide(key)
    if kill:
        assert (decision.target, decision.reason) == (Target.NEON, Reason.KILL_SWITCH)
    elif forced:
        assert (decision.target, decision.reason) == (Target(forced), Reason.FORCE)
    else:
        hashed = Target.RDS if bucket(key) < threshold(percent) else Target.NEON
        assert (decision.target, decision.reason) == (hashed, Reason.HASH)
    assert decision.target is router.target_for(key)
    assert decision.bucket == bucket(key)


_routers: dict[tuple[Decimal, bool, str | None, str], Router] = {}


def _cached(
    build: Callable[..., Router], percent: Decimal, kill: bool, forced: str | None, key: str
) -> Router:
    # Building a router per example is slow; the same configuration is reused.
    config = (percent, kill, forced, key if forced else "")
    if config not in _routers:
        force = {f"force_{forced}": frozenset({key})} if forced else {}
        _routers[config] = build(rds_percent=percent, kill_switch=kill, **force)
    return _routers[config]


def test_int_key_routes_like_its_string(ramp: list[Router]) -> None:
    for router in ramp:
        assert router.target_for(123456) is router.target_for("123456")


@pytest.mark.parametrize(
    ("key", "error"),
    [(None, TypeError), (3.0, TypeError), (False, TypeError), ("", InvalidKeyError)],
)
def test_bad_keys_never_get_a_session(
    ramp: list[Router], key: object, error: type[Exception]
) -> None:
    router = ramp[4]
    for call in (router.target_for, router.decide, router.session, router.async_session):
        with pytest.raises(error):
            call(key)  # type: ignore[operator]


def test_decisions_are_counted(build: Callable[..., Router], metric_value: Any) -> None:
    router = build(rds_percent=100, force_neon=frozenset({"vip"}))
    name = "dbroute.routing.decisions"
    before_hash = metric_value(name, **{"dbroute.target": "rds", "dbroute.reason": "hash"})
    before_force = metric_value(name, **{"dbroute.target": "neon", "dbroute.reason": "force"})
    for i in range(5):
        router.target_for(f"user-{i}")
    router.target_for("vip")
    assert (
        metric_value(name, **{"dbroute.target": "rds", "dbroute.reason": "hash"}) == before_hash + 5
    )
    assert (
        metric_value(name, **{"dbroute.target": "neon", "dbroute.reason": "force"})
        == before_force + 1
    )


def test_kill_switch_is_counted_as_such(build: Callable[..., Router], metric_value: Any) -> None:
    router = build(rds_percent=100, kill_switch=True)
    attrs = {"dbroute.target": "neon", "dbroute.reason": "kill_switch"}
    before = metric_value("dbroute.routing.decisions", **attrs)
    assert router.target_for("anyone") is Target.NEON
    assert metric_value("dbroute.routing.decisions", **attrs) == before + 1


def test_target_helpers() -> None:
    assert Target.NEON.other is Target.RDS
    assert Target.RDS.other is Target.NEON
    assert Target("rds") is Target.RDS
    assert f"{Target.NEON}" == "neon"
