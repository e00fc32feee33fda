"""The shadow worker process: outside the application, replaced when it dies, gone with it."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from dbroute import Target
from dbroute.shadow.process import RESTART_INTERVAL

from .shadow_helpers import on, worker_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def read(router, sql="select id, name from items order by id", **params):
    with router.session("user-1") as session:
        return session.execute(text(sql), params).all()


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def running_on_rds(router, pattern: str) -> bool:
    with router.engine(Target.RDS).connect() as conn:
        sql = "select count(*) from pg_stat_activity where query like :p and state = 'active'"
        return bool(conn.execute(text(sql), {"p": pattern}).scalar())


def wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True  # exited, not yet reaped
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_shadows_run_in_a_worker_process_without_secrets_on_its_command_line(shadow_router):
    router = shadow_router()
    assert worker_pids() == []  # started on the first sampled read, not before
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    (pid,) = worker_pids()
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        command = cmdline.read()
    password = router.settings.url(Target.NEON).password
    assert not password or str(password).encode() not in command
    assert router.shadow_report().compared == 1
    router.dispose()
    assert wait_gone(pid)


def test_a_killed_worker_loses_only_its_jobs_counted_and_is_replaced(shadow_router):
    router = shadow_router(shadow_statement_timeout=30)
    on(router, Target.NEON, "create view slow as select id from items")
    on(router, Target.RDS, "create view slow as select id from items, (select pg_sleep(30)) s")
    assert len(read(router, "select id from slow order by id")) == 20  # its shadow hangs
    assert wait_for(lambda: running_on_rds(router, "fetch % from dbroute_shadow%"))
    (pid,) = worker_pids()
    os.kill(pid, signal.SIGKILL)
    assert router.shadow_flush(30)  # the hanging job is accounted for, not waited on forever
    report = router.shadow_report()
    assert (report.dropped, report.compared) == (1, 0)
    time.sleep(RESTART_INTERVAL)
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    assert router.shadow_report().compared == 1
    (new_pid,) = worker_pids()
    assert new_pid != pid


def test_a_result_larger_than_the_pipe_goes_through(shadow_router):
    router = shadow_router()
    sql = "select g, repeat('x', 2000) from generate_series(1, 2000) g order by g"
    rows = read(router, sql)  # ~4 MB of cells: more than the pipe holds at once
    assert len(rows) == 2000
    assert len(read(router)) == 20  # queued behind it, in order
    assert router.shadow_flush(60)
    report = router.shadow_report()
    assert (report.compared, report.mismatched, report.errors) == (2, 0, 0)


class Unpicklable(str):
    """A value psycopg can send (it is a str) but pickle refuses."""

    def __reduce__(self):
        raise TypeError("not picklable")


def test_parameters_that_cannot_cross_processes_are_skipped_and_counted(shadow_router):
    router = shadow_router()
    rows = read(router, "select id from items where name = :name", name=Unpicklable("item-3"))
    assert [tuple(r) for r in rows] == [(3,)]
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"unsupported_parameters": 1}
    assert report.compared == 0


def test_the_shadow_runs_with_the_values_bound_even_if_the_app_reuses_them(shadow_router):
    """The job leaves later, from another thread: a list changed after the query is not seen."""
    router = shadow_router()
    assert len(read(router)) == 20  # the sender is up and polling: it picks jobs up later
    assert router.shadow_flush(30)
    ids = [1, 2]
    with router.session("user-1") as session:
        rows = session.execute(text("select id from items where id = any(:ids)"), {"ids": ids})
        assert sorted(r.id for r in rows) == [1, 2]
        ids.extend([3, 4])  # as soon as the read returned
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.compared, report.mismatched) == (2, 0)


def test_a_burst_goes_out_in_bounded_batches_and_nothing_is_lost(shadow_router, monkeypatch):
    """Reads queue faster than one write takes them (8 here): every one is still compared."""
    from dbroute.shadow import process

    monkeypatch.setattr(process, "_BATCH", 8)
    router = shadow_router(shadow_queue_size=5_000)
    reads = 300
    with router.session("user-1") as session:
        for n in range(reads):
            session.execute(text("select :n as n"), {"n": n}).all()
    assert router.shadow_flush(60)
    report = router.shadow_report()
    assert (report.compared, report.mismatched, report.dropped) == (reads, 0, 0)


def test_rows_that_cannot_be_copied_are_counted_and_the_sender_goes_on(
    shadow_router, monkeypatch, caplog
):
    """Copying happens on the sender thread: one failure there costs that read only."""
    import dbroute.shadow.experiment as experiment

    copy = experiment.cells
    failures = iter([True])

    def copy_once_failing(result):
        if next(failures, False):
            raise RuntimeError("copy failed")
        return copy(result)

    monkeypatch.setattr(experiment, "cells", copy_once_failing)
    router = shadow_router()
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"hook_failed": 1}
    assert report.compared == 1
    assert "could not copy the primary's rows" in caplog.text


_APP = r"""
import sys, time
from sqlalchemy import text
from dbroute import Router, RoutingSettings
router = Router(RoutingSettings(neon_url=sys.argv[1], rds_url=sys.argv[2], shadow_read_percent=100))
with router.session("k") as session:
    session.execute(text("select 1")).all()
router.shadow_flush(30)
print("ready", flush=True)
time.sleep(60)
"""


def test_the_worker_exits_when_its_application_dies(dbroute_databases):
    app = subprocess.Popen(
        [sys.executable, "-c", _APP, dbroute_databases.neon_url, dbroute_databases.rds_url],
        stdout=subprocess.PIPE,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == b"ready"
        workers = [
            pid
            for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if _parent(pid) == app.pid
        ]
        assert len(workers) == 1
        app.kill()  # no shutdown code runs
        app.wait()
        assert wait_gone(workers[0])
    finally:
        app.kill()


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def in_forked_child(check: Callable[[], bool]) -> None:
    """Run ``check`` in a forked child (no post-fork hook of any kind); it must say True."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if check() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_starts_its_own_worker(shadow_router):
    router = shadow_router()
    assert len(read(router)) == 20
    assert router.shadow_flush(30)

    def child() -> bool:  # pools, worker and report: the child's own
        ok = len(read(router)) == 20 and router.shadow_flush(30)
        return ok and router.shadow_report().compared == 2

    in_forked_child(child)
    # The parent's worker is untouched by the child's.
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    assert router.shadow_report().compared == 2


def test_a_forked_child_judges_user_callables_on_threads_of_its_own(shadow_router):
    """The parent's judging threads do not survive the fork: the child's start on first need."""
    router = shadow_router()
    router.shadow.compare(lambda primary, shadow: primary == shadow)
    assert len(read(router)) == 20
    assert router.shadow_flush(30)  # judged on the parent's threads

    def child() -> bool:
        ok = len(read(router)) == 20 and router.shadow_flush(10)
        return ok and router.shadow_report().compared == 2

    in_forked_child(child)


def test_a_forked_child_closes_shadow_reads_whatever_lock_the_parent_held(shadow_router):
    """A parent thread inside the closing event at the fork must not hang the child's close."""
    router = shadow_router()
    assert len(read(router)) == 20
    assert router.shadow_flush(30)

    def child() -> bool:
        signal.alarm(20)  # a deadlock ends the child with SIGALRM, failing the test
        router.shadow.close(timeout=5)
        return True

    with router.shadow._closing._cond:  # held at the fork, as by another thread
        in_forked_child(child)


def test_decoding_matches_psycopg_for_what_the_app_saw(shadow_router):
    """A read the caller decoded with its own psycopg loaders matches in the worker."""
    router = shadow_router()
    sql = (
        "select 1.50::numeric as n, '2024-01-01 12:00+02'::timestamptz as t, "
        "'{\"a\": [1, 2]}'::jsonb as j, array[1, null, 3] as a, null::int as z"
    )
    rows = read(router, sql)
    assert rows[0].j == {"a": [1, 2]}
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.compared, report.mismatched, report.errors) == (1, 0, 0)


def test_the_worker_interpreter_can_be_chosen(shadow_router, tmp_path):
    """DBROUTE_SHADOW_PYTHON: for servers (uWSGI...) whose sys.executable is not Python."""
    marker = tmp_path / "started"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    router = shadow_router(shadow_python=str(python))
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    assert marker.exists()
    assert router.shadow_report().compared == 1


_INTERRUPTED_APP = r"""
import os, signal, sys, time
from sqlalchemy import text
from dbroute import Router, RoutingSettings
router = Router(RoutingSettings(neon_url=sys.argv[1], rds_url=sys.argv[2], shadow_read_percent=100))
def read():
    with router.session("k") as session:
        session.execute(text("select 1")).all()
    return router.shadow_flush(30)
read()
try:
    os.killpg(os.getpgid(0), signal.SIGINT)  # what Ctrl-C in a terminal does
    time.sleep(5)
except KeyboardInterrupt:
    pass
ok = read() and router.shadow_report().compared == 2 and router.shadow_report().dropped == 0
print("ok" if ok else f"not ok: {router.shadow_report()}", flush=True)
router.dispose()
"""


def test_ctrl_c_is_the_applications_to_handle(dbroute_databases):
    app = subprocess.run(
        [
            sys.executable,
            "-c",
            _INTERRUPTED_APP,
            dbroute_databases.neon_url,
            dbroute_databases.rds_url,
        ],
        capture_output=True,
        start_new_session=True,  # its own process group, as a terminal gives a program
        timeout=60,
    )
    assert app.stdout.decode().strip() == "ok", app.stderr.decode()[-2000:]


def test_a_worker_that_cannot_run_costs_only_counted_drops(shadow_router, caplog):
    router = shadow_router(shadow_python="/bin/false")  # starts, then exits at once
    for _ in range(3):
        assert len(read(router)) == 20  # the caller is never affected
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.compared == 0
    assert report.dropped == 3
    # Its drops can be counted (a broken pipe) before the reader thread logs the exit.
    assert wait_for(lambda: "worker process exited" in caplog.text, 10), caplog.text


def test_a_job_the_worker_cannot_read_is_skipped_and_counted(shadow_router):
    """A value only the application can unpickle (here, its own tzinfo) never reaches it."""
    from .test_shadow_wire import AppZone

    router = shadow_router()
    when = datetime.datetime(2024, 1, 1, 1, 0, tzinfo=AppZone())
    rows = read(router, "select count(*) from items where seen_at <= :when", when=when)
    assert rows[0][0] == 20
    assert len(read(router)) == 20  # the worker is still there for the next one
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped.get("unsupported_parameters") == 1
    assert report.compared == 1


def test_a_job_the_worker_cannot_read_costs_that_job_only(shadow_router, monkeypatch):
    """Should one reach the worker anyway, it is counted; the reads around it are compared."""
    import dbroute.shadow.experiment as experiment

    from .test_shadow_wire import AppZone

    monkeypatch.setattr(experiment, "snapshot", lambda value: value)  # let it through
    router = shadow_router()
    when = datetime.datetime(2024, 1, 1, 1, 0, tzinfo=AppZone())
    with router.session("user-1") as session:  # one burst: the sender sends it together
        for _ in range(5):
            assert len(session.execute(text("select id from items order by id")).all()) == 20
        sql = "select count(*) from items where seen_at <= :when"
        assert session.execute(text(sql), {"when": when}).scalar() == 20
        for _ in range(5):
            assert len(session.execute(text("select id from items order by id")).all()) == 20
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"unsupported_parameters": 1}
    assert (report.compared, report.mismatched, report.dropped) == (10, 0, 0)


def test_a_forked_child_does_not_keep_its_parents_worker_alive(shadow_router):
    router = shadow_router()
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    (pid,) = worker_pids()
    ready, done = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child: stay alive until told
        os.close(ready[0])
        os.close(done[1])
        os.write(ready[1], b"x")
        os.read(done[0], 1)
        os._exit(0)
    # Each end in one process only: a child that dies early is an end of file here, not a hang.
    os.close(ready[1])
    os.close(done[0])
    try:
        assert os.read(ready[0], 1) == b"x"
        router.dispose()  # the parent closes the worker's stdin...
        assert wait_gone(pid)  # ...and the worker ends, though the child still lives
    finally:
        os.close(done[1])  # the child's cue to exit
        os.close(ready[0])
        os.waitpid(child, 0)


def test_a_forked_child_leaves_descriptors_reused_after_a_worker_alone(shadow_router, tmp_path):
    """A stopped worker's pipe numbers, once reused by the application, stay the application's."""
    router = shadow_router()
    assert len(read(router)) == 20
    assert router.shadow_flush(30)
    before = set(os.listdir("/proc/self/fd"))
    router.dispose()  # its worker's pipes close, and their numbers are free again
    freed = sorted(int(fd) for fd in before - set(os.listdir("/proc/self/fd")))
    assert freed
    own = os.open(tmp_path / "the-applications", os.O_CREAT | os.O_RDWR)
    for fd in freed:  # the application reuses every freed number
        os.dup2(own, fd)
    try:
        in_forked_child(
            lambda: all(
                os.readlink(f"/proc/self/fd/{fd}").endswith("the-applications") for fd in freed
            )
        )
    finally:
        for fd in (own, *freed):
            os.close(fd)
