"""Generated keys during a ramp: both databases are primaries and hand out serial ids.

The mirror copies row images, not sequence positions. With both sequences at
the same position, a Neon user and an RDS user get the same id (a duplicate
key or a conflict); after ``sync_sequences(..., headroom=N)`` they draw from
disjoint ranges and nothing collides.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from tests.dualwrite.support import create_schema, wait_for_backlog_zero

from dbroute import Router
from dbroute.target import Target
from dbroute.validate import DataOptions, compare_data, sync_sequences

MakeRouter = Callable[..., Router]

SCHEMA = """
create table items (
    id    bigint generated always as identity primary key,
    owner text not null,
    n     int not null
);
create table notes (
    id      bigserial primary key,
    item_id bigint not null references items (id) on delete cascade,
    body    text not null
);
"""
HEADROOM = 1_000_000_000
USERS_PER_SIDE = 2
INSERTS = 15


def ramp_router(make_router: MakeRouter) -> Router:
    """50 % of users on RDS, both databases mirroring to each other, capture set up."""
    router = make_router(dual_write=True, rds_percent=50)
    create_schema(router, SCHEMA)
    router.setup()
    return router


def users_of(router: Router) -> dict[Target, list[str]]:
    found: dict[Target, list[str]] = {t: [] for t in Target}
    n = 0
    while any(len(users) < USERS_PER_SIDE for users in found.values()):
        user = f"user-{n}"
        if len(found[router.target_for(user)]) < USERS_PER_SIDE:
            found[router.target_for(user)].append(user)
        n += 1
    return found


def insert_concurrently(router: Router) -> list[BaseException]:
    """Each user inserts an item and a note (generated ids) ``INSERTS`` times, in parallel."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(USERS_PER_SIDE * 2)

    def run(user: str) -> None:
        barrier.wait()
        for n in range(INSERTS):
            try:
                with router.session(user) as session, session.begin():
                    item = session.execute(
                        text("insert into items (owner, n) values (:u, :n) returning id"),
                        {"u": user, "n": n},
                    ).scalar_one()
                    session.execute(
                        text("insert into notes (item_id, body) values (:i, 'x')"), {"i": item}
                    )
            except BaseException as exc:  # recorded: the test decides what is allowed
                errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(user,), daemon=True)
        for users in users_of(router).values()
        for user in users
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def conflicts(router: Router) -> int:
    total = 0
    for target in Target:
        with router.engine(target).connect() as conn:
            query = text("select count(*) from dbroute.journal where conflict")
            total += int(conn.execute(query).scalar_one())
    return total


def test_headroom_lets_both_primaries_generate_keys(make_router: MakeRouter) -> None:
    router = ramp_router(make_router)
    neon, rds = router.engine(Target.NEON), router.engine(Target.RDS)
    sync_sequences(neon, rds, Target.NEON, headroom=HEADROOM)

    # Syncing again while RDS's users insert (each run moves RDS's sequences a
    # little further) must never hand out an id twice: it locks what it moves.
    stop, resync_errors = threading.Event(), []

    def resync() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            try:
                sync_sequences(neon, rds, Target.NEON, headroom=HEADROOM + step * 100)
            except BaseException as exc:  # recorded and asserted on
                resync_errors.append(exc)
            time.sleep(0.02)

    resyncer = threading.Thread(target=resync, daemon=True)
    resyncer.start()
    try:
        errors = insert_concurrently(router) + insert_concurrently(router)
    finally:
        stop.set()
        resyncer.join(60)

    assert errors == []
    assert resync_errors == []
    assert conflicts(router) == 0
    report = router.replay()
    assert report.ok, report
    wait_for_backlog_zero(router)
    assert compare_data(neon, rds, DataOptions()).clean
    rows = USERS_PER_SIDE * 2 * INSERTS * 2
    with neon.connect() as conn:
        ids = conn.execute(text("select owner, id from items")).all()
        assert conn.execute(text("select count(*) from notes")).scalar_one() == rows
    assert len(ids) == rows
    # Each side drew from its own range: Neon below the headroom, RDS above it.
    for owner, key in ids:
        assert (key > HEADROOM) == (router.target_for(owner) is Target.RDS), (owner, key)


def test_without_headroom_the_two_sides_hand_out_the_same_ids(make_router: MakeRouter) -> None:
    router = ramp_router(make_router)
    sync_sequences(router.engine(Target.NEON), router.engine(Target.RDS), Target.NEON)

    errors = insert_concurrently(router)
    replayed = router.replay()

    duplicates = [
        e
        for e in errors
        if isinstance(e, IntegrityError) and getattr(e.orig, "sqlstate", None) == "23505"
    ]
    found = len(duplicates) + conflicts(router) + len(replayed.conflicts)
    assert found > 0, (errors, replayed)
    # Every error is the database refusing a write (a collision), not a broken test.
    assert all(isinstance(e, DBAPIError) for e in errors), errors
