"""A pre-forking server (gunicorn --preload) builds the router once, then forks its workers.

Each child must route on connections of its own, mirror on its own, and
follow the phase with a poller of its own; no post-fork hook is asked of the user.
"""

from __future__ import annotations

import os
import sys
import time
from decimal import Decimal

import pytest
from sqlalchemy import text
from tests.dualwrite.support import kv_rows, write

from dbroute import Router
from dbroute.phases.model import Phase
from dbroute.target import Target

from .helpers import force_phase

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def backend_pid(router: Router, target: Target) -> int:
    with router.engine(target).connect() as conn:
        return int(conn.execute(text("select pg_backend_pid()")).scalar_one())


def mirror_backends(router: Router) -> int:
    """Connections to RDS of dual-write's mirror pools, every process included."""
    with router.engine(Target.RDS).connect() as conn:
        sql = (
            "select count(*) from pg_stat_activity "
            "where application_name = 'dbroute-dualwrite' and datname = current_database()"
        )
        return int(conn.execute(text(sql)).scalar_one())


def child_main(router: Router, parents_pid: int, told: int, tell: int) -> bool:
    """The forked worker: its own connections, its own mirror, its own phase poller."""
    fresh = backend_pid(router, Target.NEON) != parents_pid
    write(router, "user-1", "insert into kv values (2, 2)")  # mirrored to RDS
    os.write(tell, b"w")
    if os.read(told, 1) != b"p":  # the parent moved the phase
        return False
    deadline = time.monotonic() + 20
    while router.target_for("user-1") is not Target.RDS:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return fresh


def test_a_forked_child_routes_mirrors_and_follows_the_phase_on_its_own(control, make_router):
    force_phase(control, Phase.DUAL_WRITE)
    router = make_router(phase_poll_seconds=0.2)
    for target in Target:
        with router.engine(target).begin() as conn:
            conn.execute(text("create table kv (k int primary key, v int not null)"))
    router.setup()
    write(router, "user-1", "insert into kv values (1, 1)")  # the parent's pools are in use
    parents_pid = backend_pid(router, Target.NEON)
    assert mirror_backends(router) == 1
    to_child, from_child = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(to_child[1])
            os.close(from_child[0])
            code = 0 if child_main(router, parents_pid, to_child[0], from_child[1]) else 2
        except BaseException as exc:  # the child must never return into pytest
            print(f"child failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    os.close(to_child[0])
    os.close(from_child[1])
    try:
        assert os.read(from_child[0], 1) == b"w"
        assert mirror_backends(router) == 2  # the child mirrored on a connection of its own
        assert kv_rows(router.engine(Target.RDS)) == {1: 1, 2: 2}
        # The parent's own connections were never the child's: they still work.
        assert backend_pid(router, Target.NEON) == parents_pid
        write(router, "user-1", "insert into kv values (3, 3)")
        force_phase(control, Phase.RAMP, Decimal(100))
        os.write(to_child[1], b"p")
    finally:
        os.close(to_child[1])  # an end of file for a child still waiting
        _, status = os.waitpid(child, 0)
        os.close(from_child[0])
    assert os.waitstatus_to_exitcode(status) == 0
    assert kv_rows(router.engine(Target.RDS)) == {1: 1, 2: 2, 3: 3}
