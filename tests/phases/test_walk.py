"""The whole migration, forward and back, while writers run: nothing is lost.

Two in-process "app instances" (routers following the phase table) serve
writer threads. Each phase change goes through PhaseControl (the checks must
pass), is made while the writers keep writing, and the apps pick it up by
polling. Then the writers pause, the journal is replayed, `validate` must
find both databases equal, and every acknowledged write must be on both.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import text

from dbroute import Router, RoutingSettings
from dbroute.phases.control import PhaseControl
from dbroute.phases.model import Direction, Phase
from dbroute.target import Target

SCHEMA = """
create table writes (
    user_id text not null,
    n       int  not null,
    phase   text not null,
    primary key (user_id, n)
);
create table counters (user_id text primary key, value int not null)
"""

WALK = [
    (Direction.ADVANCE, Phase.DUAL_WRITE, None),
    (Direction.ADVANCE, Phase.RAMP, Decimal(10)),
    (Direction.ADVANCE, Phase.RAMP, Decimal(60)),
    (Direction.ADVANCE, Phase.RDS_PRIMARY, None),
    (Direction.ADVANCE, Phase.RDS_ONLY, None),
    (Direction.ROLLBACK, Phase.RDS_PRIMARY, None),
    (Direction.ROLLBACK, Phase.RAMP, Decimal(60)),
    (Direction.ROLLBACK, Phase.RAMP, Decimal(10)),
    (Direction.ROLLBACK, Phase.DUAL_WRITE, None),
    (Direction.ROLLBACK, Phase.NEON_ONLY, None),
]
WRITERS = 4
USERS_PER_WRITER = 5


class Writers:
    """Writer threads, each owning some users; every committed write is acknowledged."""

    def __init__(self, routers: list[Router]) -> None:
        self.acked: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        self.locks = [threading.Lock() for _ in range(WRITERS)]
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(w, routers[w % len(routers)]), daemon=True)
            for w in range(WRITERS)
        ]
        self.done = Counter[int]()

    def _run(self, w: int, router: Router) -> None:
        users = [f"w{w}-u{u}" for u in range(USERS_PER_WRITER)]
        n = 0
        while not self.stop.is_set():
            user = users[n % len(users)]
            with self.locks[w]:
                try:
                    with router.session(user) as session, session.begin():
                        phase = router.routing_state.phase
                        session.execute(
                            text("insert into writes values (:u, :n, :p)"),
                            {"u": user, "n": n, "p": phase.value if phase else "?"},
                        )
                        session.execute(
                            text(
                                "insert into counters values (:u, 1) on conflict (user_id) "
                                "do update set value = counters.value + 1"
                            ),
                            {"u": user},
                        )
                    self.acked.append((user, n))
                    self.done[w] += 1
                except BaseException as exc:  # recorded and asserted on: nothing hidden
                    self.errors.append(exc)
                    return
            n += 1
            time.sleep(0.001)  # let pause() take the lock

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def pause(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def resume(self) -> None:
        for lock in self.locks:
            lock.release()

    def run_for(self, writes_each: int, timeout: float = 60) -> None:
        """Let every writer commit at least ``writes_each`` more transactions."""
        target = {w: self.done[w] + writes_each for w in range(WRITERS)}
        deadline = time.monotonic() + timeout
        while any(self.done[w] < target[w] for w in range(WRITERS)):
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "writers stalled"
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def wait_for_routers(routers: list[Router], version: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(r.routing_state.phase_version != version for r in routers):
        assert time.monotonic() < deadline, "routers did not pick up the phase change"
        time.sleep(0.02)


def assert_nothing_lost(control: PhaseControl, acked: list[tuple[str, int]]) -> None:
    expected = set(acked)
    per_user = Counter(user for user, _ in acked)
    for target, engine in control.engines.items():
        with engine.connect() as conn:
            rows = {(r.user_id, r.n) for r in conn.execute(text("select user_id, n from writes"))}
            counters = dict(conn.execute(text("select user_id, value from counters")).all())
        assert rows == expected, (
            f"{target.value}: lost {len(expected - rows)}, extra {len(rows - expected)}"
        )
        assert counters == dict(per_user), target.value


@pytest.mark.slow
def test_walk_every_phase_forward_and_back_under_load(dbroute_databases):
    from dbroute.validate import record_run, validate

    settings = RoutingSettings(
        neon_url=dbroute_databases.neon_url,
        rds_url=dbroute_databases.rds_url,
        phase_poll_seconds=0.2,
    )
    routers = [Router(settings), Router(settings)]
    control = PhaseControl(
        RoutingSettings(neon_url=dbroute_databases.neon_url, rds_url=dbroute_databases.rds_url)
    )
    writers = Writers(routers)
    try:
        for target in Target:
            with routers[0].engine(target).begin() as conn:
                conn.exec_driver_sql(SCHEMA)
        routers[0].setup()  # change capture on both databases, before any write
        writers.start()
        writers.run_for(5)
        for direction, phase, percent in WALK:
            plan = control.plan(direction, phase, percent=percent)
            assert plan.allowed, plan.refusal()
            # The change is made while the writers keep writing.
            stored, failures = control.execute(plan, by="walk", reason=str(plan.transition))
            assert failures == {}
            wait_for_routers(routers, stored.version)
            writers.run_for(10)
            writers.pause()
            try:
                report = routers[0].replay()
                assert report.ok, report
                result = validate(control.engines[Target.NEON], control.engines[Target.RDS])
                assert result.clean, (plan.transition, result.summary())
                record_run(control.engines[Target.NEON], control.engines[Target.RDS], result)
                assert_nothing_lost(control, writers.acked)
            finally:
                writers.resume()
        writers.finish()
        assert not writers.errors, writers.errors
        phases = Counter(row[0] for row in _phases_written(control))
        assert set(phases) == set(Phase)  # writes really happened in every phase
        with control.engines[Target.NEON].connect() as conn:
            audited = conn.execute(text("select count(*) from dbroute.phase_history")).scalar()
        assert audited == len(WALK)
    finally:
        writers.finish()
        for router in routers:
            router.dispose()
        control.close()


def _phases_written(control: PhaseControl) -> list[tuple[str]]:
    with control.engines[Target.NEON].connect() as conn:
        return [tuple(r) for r in conn.execute(text("select phase from writes"))]
