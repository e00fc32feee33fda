"""The primary path is never affected: failing, hanging, unreachable or flooded shadows."""

from __future__ import annotations

import threading
import tracemalloc

from sqlalchemy import text

from dbroute import Target

from .shadow_helpers import on, seed

EXPECTED = [(n, f"item-{n}") for n in range(1, 21)]


def read_items(router, sql="select id, name from items order by id", key="user-1"):
    with router.session(key) as session:
        return [tuple(row) for row in session.execute(text(sql))]


def test_shadow_error_is_counted_and_caller_unaffected(shadow_router):
    router = shadow_router()
    on(router, Target.RDS, "drop table items")
    assert read_items(router) == EXPECTED
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.errors, report.compared) == (1, 0)


def test_hanging_shadow_times_out_without_holding_the_caller(shadow_router):
    router = shadow_router(shadow_statement_timeout=0.5)
    on(router, Target.NEON, "create view slow_items as select id, name from items")
    on(
        router,
        Target.RDS,
        "create view slow_items as select id, name from items, (select pg_sleep(30)) as hang",
    )
    assert read_items(router, "select id, name from slow_items order by id") == EXPECTED
    # The caller has its rows while the shadow is still queued or running.
    assert router.shadow_report().pending == 1
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.errors, report.pending) == (1, 0)


def test_down_shadow_server_is_counted(shadow_router, dbroute_servers):
    router = shadow_router()
    dbroute_servers.rds.stop()
    try:
        for n in range(3):
            assert read_items(router, key=f"u{n}") == EXPECTED
        assert router.shadow_flush(60)
        assert router.shadow_report().errors == 3
    finally:
        dbroute_servers.rds.start()
    # The test cluster runs with synchronous_commit=off: an immediate stop may lose the
    # last commits, so RDS gets its table again; the shadow pool then recovers by itself.
    on(router, Target.RDS, "drop table if exists items")
    seed(router, target=Target.RDS)
    assert read_items(router) == EXPECTED
    assert router.shadow_flush(30)
    assert router.shadow_report().compared == 1


def test_flood_with_slow_secondary_drops_and_stays_bounded(shadow_router):
    router = shadow_router(shadow_queue_size=5, shadow_statement_timeout=10)
    lock_taken, release = threading.Event(), threading.Event()

    def hold_lock():  # a long migration on RDS: every shadow read waits behind it
        with router.engine(Target.RDS).begin() as conn:
            conn.execute(text("lock table items in access exclusive mode"))
            lock_taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert lock_taken.wait(30)
        for n in range(100):  # warm-up: fills the queue, fills caches
            read_items(router, key=f"u{n}")
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        for n in range(1000):
            assert read_items(router, key=f"u{n}") == EXPECTED
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        report = router.shadow_report()
        assert report.pending <= 6  # the queue, plus the one running
        assert report.dropped >= 1100 - 6
        # 1000 reads of 20 rows kept would be megabytes; bounded means no growth.
        assert after - before < 256 * 1024
    finally:
        release.set()
        holder.join()
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.compared + report.errors + report.dropped == 1100


def test_dispose_stops_the_workers(shadow_router):
    router = shadow_router()
    read_items(router)
    assert router.shadow_flush(30)
    assert any(t.name.startswith("dbroute-shadow") for t in threading.enumerate())
    router.dispose()
    assert not any(t.name.startswith("dbroute-shadow") for t in threading.enumerate())
    assert read_items(router) == EXPECTED  # still routes, no longer shadows
    assert router.shadow_report().compared == 1


async def test_async_sessions_are_shadowed(shadow_router):
    router = shadow_router()
    on(router, Target.RDS, "update items set name = 'changed' where id = 4")
    async with router.async_session("user-1") as session:
        rows = (await session.execute(text("select id, name from items order by id"))).all()
        same = (await session.execute(text("select id from items"))).all()
    assert [tuple(r) for r in rows] == EXPECTED
    assert len(same) == 20
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.compared, report.mismatched) == (2, 1)
    await router.adispose()
