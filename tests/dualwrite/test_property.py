"""Property: any interleaving of inserts, updates and deletes, written on either database,
with secondary failures injected anywhere and writes undone by a savepoint, converges after
replay; with commits mirrored from notices of row images or after collect()."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tests.dualwrite.support import assert_converged, create_schema, kv_rows, secondary_locked

from dbroute.target import Target

SQL = {
    "insert": "insert into kv values (:k, :v) on conflict (k) do nothing",
    "update": "update kv set v = :v where k = :k",
    "delete": "delete from kv where k = :k",
    "bump": "update kv set v = v + 1",
    "upsert": "insert into kv values (:k, :v) on conflict (k) do update set v = excluded.v",
}
KEYS = {Target.NEON: "on-neon", Target.RDS: "on-rds"}

ops = st.lists(
    st.tuples(
        st.sampled_from(list(Target)),
        st.sampled_from(sorted(SQL)),
        st.integers(0, 2),
        st.integers(0, 99),
        st.booleans(),  # inject a failure of the mirror
        st.booleans(),  # write in a savepoint rolled back (after its images were sent)
    ),
    max_size=15,
)


def _reset(router) -> None:
    for target in Target:
        with router.engine(target).begin() as conn:
            conn.execute(text("select set_config('dbroute.applying', 'on', true)"))
            conn.execute(text("delete from kv; delete from dbroute.journal"))


def _model(operations) -> dict[int, int]:
    rows: dict[int, int] = {}
    for _, op, k, v, _, undone in operations:
        if undone:
            continue
        if op == "insert":
            rows.setdefault(k, v)
        elif op == "upsert" or (op == "update" and k in rows):
            rows[k] = v
        elif op == "delete":
            rows.pop(k, None)
        elif op == "bump":
            rows = {key: value + 1 for key, value in rows.items()}
    return rows


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=[True, False], ids=["notices", "collect"])
def router(make_router, request):
    """One router for all examples (a function-scoped fixture runs once per test)."""
    router = make_router(
        dual_write=True,
        force_rds="on-rds",
        dual_write_pause_ms=0,
        dual_write_lock_timeout_ms=30,
        dual_write_notices=request.param,
    )
    create_schema(router)
    router.setup()
    return router


@given(operations=ops, one_side=st.booleans())
@PROPERTY
def test_any_interleaving_with_failures_converges(router, operations, one_side):
    _reset(router)
    if one_side:
        operations = [(Target.NEON, *rest) for _, *rest in operations]
    for side, op, k, v, fail, undone in operations:
        with (
            secondary_locked(router, side.other) if fail else nullcontext(),
            router.session(KEYS[side]) as session,
            session.begin(),
        ):
            savepoint = session.begin_nested() if undone else None
            session.execute(text(SQL[op]), {"k": k, "v": v})
            if savepoint is not None:
                savepoint.rollback()
    report = router.replay()
    failures = any(fail for *_, fail, _ in operations)
    event(f"conflicts: {bool(report.conflicts)}; failures: {failures}")
    if one_side:
        # A single primary: no conflicts, and exactly the model's rows on both sides.
        assert report.ok, report
        assert kv_rows(router.engine(Target.NEON)) == _model(operations)
    elif report.conflicts:
        # Both sides changed a key while a mirror failed: an operator picks the winner.
        router.replay(prefer=Target.NEON)
    assert_converged(router, {"kv": "k"})
