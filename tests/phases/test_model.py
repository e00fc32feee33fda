"""Phases, their rules and transitions; settings validation; routing per phase (no database)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute import RoutingSettings
from dbroute.bucketing import bucket
from dbroute.errors import ConfigurationError, PhaseTransitionError
from dbroute.phases.model import PHASE_ORDER, Direction, Phase, check_transition, rules
from dbroute.routing_state import RoutingState
from dbroute.target import Target

URLS = {"neon_url": "postgresql://u@127.0.0.1:1/neon", "rds_url": "postgresql://u@127.0.0.1:1/rds"}
phases = st.sampled_from(PHASE_ORDER)
percents = st.integers(0, 10_000).map(lambda n: Decimal(n) / 100)
deterministic = settings(derandomize=True, max_examples=300, deadline=None)


def expected_allowed(
    source: Phase, target: Phase, direction: Direction, source_pct: Decimal, target_pct: Decimal
) -> bool:
    """The transition rule written out independently of the implementation."""
    step = target.position - source.position
    if source is target:
        if source is not Phase.RAMP or target_pct == source_pct:
            return False
        return (target_pct > source_pct) == (direction is Direction.ADVANCE)
    if (source, target) == (Phase.RDS_PRIMARY, Phase.DUAL_WRITE):
        return direction is Direction.ROLLBACK
    return step == (1 if direction is Direction.ADVANCE else -1)


@deterministic
@given(phases, phases, st.sampled_from(Direction), percents, percents)
def test_only_adjacent_or_justified_moves_are_allowed(source, target, direction, spct, tpct):
    source_pct = rules(source).percent(spct)
    target_pct = rules(target).percent(tpct)
    allowed = expected_allowed(source, target, direction, source_pct, target_pct)
    if allowed:
        move = check_transition(
            source,
            target,
            direction,
            source_percent=source_pct,
            target_percent=tpct if target is Phase.RAMP else None,
        )
        assert (move.source, move.target, move.direction) == (source, target, direction)
        assert move.target_percent == target_pct
    else:
        with pytest.raises(PhaseTransitionError):
            check_transition(
                source,
                target,
                direction,
                source_percent=source_pct,
                target_percent=tpct if target is Phase.RAMP else None,
            )


def test_walk_forward_and_back_one_phase_at_a_time():
    zero = Decimal(0)
    for a, b in itertools.pairwise(PHASE_ORDER):
        pct_a, pct_b = rules(a).percent(zero), rules(b).percent(zero)
        assert check_transition(a, b, Direction.ADVANCE, source_percent=pct_a).target is b
        assert check_transition(b, a, Direction.ROLLBACK, source_percent=pct_b).target is a


def test_errors_explain_what_to_do():
    with pytest.raises(PhaseTransitionError, match="skips phases"):
        check_transition(Phase.NEON_ONLY, Phase.RAMP, Direction.ADVANCE, source_percent=Decimal(0))
    with pytest.raises(PhaseTransitionError, match="dbroute rollback"):
        check_transition(Phase.RAMP, Phase.DUAL_WRITE, Direction.ADVANCE, source_percent=Decimal(5))
    with pytest.raises(PhaseTransitionError, match="only for ramp"):
        check_transition(
            Phase.RAMP,
            Phase.RDS_PRIMARY,
            Direction.ADVANCE,
            source_percent=Decimal(50),
            target_percent=Decimal(50),
        )


def expected_settings_ok(phase, percent, dual_write, kill, force_rds, force_neon) -> bool:
    if phase is None:
        return True
    r = rules(phase)
    if percent is not None and r.fixed_percent is not None and percent != r.fixed_percent:
        return False
    if dual_write is not None and dual_write != r.dual_write:
        return False
    if force_rds and phase is Phase.NEON_ONLY:
        return False
    return not ((kill or force_neon) and phase is Phase.RDS_ONLY)


@deterministic
@given(
    st.none() | phases,
    st.none() | st.sampled_from([Decimal(0), Decimal("12.5"), Decimal(100)]),
    st.none() | st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_settings_reject_exactly_the_invalid_combinations(
    phase, percent, dual_write, kill, force_rds, force_neon
):
    values: dict[str, object] = {"kill_switch": kill}
    if phase is not None:
        values["phase"] = phase.value
    if percent is not None:
        values["rds_percent"] = percent
    if dual_write is not None:
        values["dual_write"] = dual_write
    if force_rds:
        values["force_rds"] = "user-1"
    if force_neon:
        values["force_neon"] = "user-2"
    if expected_settings_ok(phase, percent, dual_write, kill, force_rds, force_neon):
        made = RoutingSettings(**URLS, **values)
        if phase is not None:
            r = rules(phase)
            assert made.dual_write is r.dual_write
            assert made.rds_percent == r.percent(percent)
    else:
        with pytest.raises(ConfigurationError, match="DBROUTE_PHASE"):
            RoutingSettings(**URLS, **values)


def test_phase_from_the_environment_implies_its_flags(monkeypatch):
    monkeypatch.setenv("DBROUTE_PHASE", "rds_primary")
    made = RoutingSettings(**URLS)
    assert (made.phase, made.rds_percent, made.dual_write) == (Phase.RDS_PRIMARY, 100, True)
    monkeypatch.setenv("DBROUTE_RDS_PERCENT", "5")
    with pytest.raises(ConfigurationError, match="fixes DBROUTE_RDS_PERCENT at 100, got 5"):
        RoutingSettings(**URLS)


def test_phase_store_and_explicit_percentage_conflict():
    with pytest.raises(ConfigurationError, match="phase store"):
        RoutingSettings(**URLS, phase_poll_seconds=2, rds_percent=5)
    assert RoutingSettings(**URLS, phase_poll_seconds=2).phase is None


@deterministic
@given(phases, percents, st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=20))
def test_routing_state_routes_as_the_phase_says(phase, percent, keys):
    from dbroute.router import Router

    router = Router(RoutingSettings(**URLS))
    try:
        router.set_routing_state(router.routing_state.with_phase(phase, percent, 7))
        state = router.routing_state
        r = rules(phase)
        assert (state.phase, state.phase_version, state.dual_write) == (phase, 7, r.dual_write)
        for key in keys:
            expected = Target.RDS if bucket(key) < int(r.percent(percent) * 100) else Target.NEON
            assert router.target_for(key) is expected
    finally:
        router.dispose()


def test_overrides_survive_a_phase_change():
    state = RoutingState.from_settings(RoutingSettings(**URLS, kill_switch=True, force_rds="a"))
    moved = state.with_phase(Phase.RDS_PRIMARY, Decimal(0), 3)
    assert moved.kill_switch
    assert moved.force_rds == frozenset({"a"})
    assert moved.threshold == 10_000


@deterministic
@given(phases, phases, percents, percents)
def test_moves_that_hand_keys_over_need_an_empty_journal_and_a_validation(a, b, pa, pb):
    from dbroute.phases.checks import required_checks
    from dbroute.phases.model import Transition

    source_pct, target_pct = rules(a).percent(pa), rules(b).percent(pb)
    checks = required_checks(Transition(a, b, source_pct, target_pct))
    kinds = [kind for kind, _ in checks]
    if source_pct == target_pct:
        assert "backlog" not in kinds
        assert "validation" not in kinds
    else:
        giver = Target.NEON if target_pct > source_pct else Target.RDS
        assert ("backlog", giver) in checks
        assert "validation" in kinds
    # Every database the target phase writes to is checked for health, and each
    # of its primaries for sequences.
    writes_to = set(Target) if rules(b).dual_write else set(rules(b).primaries)
    assert {t for kind, t in checks if kind == "health"} == writes_to
    assert {t for kind, t in checks if kind == "sequences"} == set(rules(b).primaries)
