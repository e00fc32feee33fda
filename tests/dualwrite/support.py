"""Helpers of the dual-write tests: the test schema on both databases, writers, and a
row-by-row checksum comparison of the two databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text

from dbroute import Router
from dbroute.dualwrite.journal import backlog
from dbroute.target import Target

SCHEMA = """
create table accounts (
    id         bigint generated always as identity primary key,
    owner      text not null,
    balance    numeric(12, 2) not null default 0,
    created_at timestamptz not null default now(),
    token      uuid not null default gen_random_uuid(),
    doubled    numeric generated always as (balance * 2) stored
);
create table entries (
    id         bigserial primary key,
    account_id bigint not null references accounts (id) on delete cascade,
    amount     numeric(12, 2) not null,
    note       text
);
create table audit (
    id      bigserial primary key,
    account bigint not null,
    what    text not null,
    at      timestamptz not null default clock_timestamp()
);
create function audit_account() returns trigger language plpgsql as $$
begin
    insert into audit (account, what) values (new.id, tg_op);
    return new;
end $$;
create trigger accounts_audit after insert or update on accounts
    for each row execute function audit_account();
create table counters (
    name  text primary key,
    value bigint not null default 0
);
create table kv (
    k int primary key,
    v int not null
);
"""

# Row-by-row checksums: one md5 per row, in key order; equal lists mean equal tables.
CHECKSUM = "select {pk}::text as pk, md5(t::text) as sum from {table} t order by {pk}"
TABLES = {"accounts": "id", "entries": "id", "audit": "id", "counters": "name", "kv": "k"}


def write(router: Router, key: str, *statements: str) -> None:
    """Commit ``statements`` in one transaction of ``key``'s session."""
    with router.session(key) as session, session.begin():
        for statement in statements:
            session.execute(text(statement))


@contextmanager
def secondary_locked(router: Router, target: Target) -> Iterator[None]:
    """Hold kv locked on ``target`` so mirrors into it time out (and journal)."""
    with router.engine(target).connect() as conn, conn.begin():
        conn.execute(text("lock table kv in access exclusive mode"))
        yield


def create_schema(router: Router, ddl: str = SCHEMA) -> None:
    for target in Target:
        with router.engine(target).begin() as conn:
            conn.exec_driver_sql(ddl)


def checksums(engine: Engine, tables: dict[str, str] | None = None) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(text(CHECKSUM.format(table=table, pk=pk)))]
            for table, pk in (tables or TABLES).items()
        }


def wait_for_backlog_zero(router: Router) -> None:
    """Confirmed intent rows go in the background (within ~0.2 s): wait for them."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(journaled(router.engine(target)) == 0 for target in Target):
            return
        time.sleep(0.05)
    raise AssertionError(
        "journal entries left: " + str({t: journaled(router.engine(t)) for t in Target})
    )


def assert_converged(router: Router, tables: dict[str, str] | None = None) -> None:
    """Replay, then: empty journals, and both databases equal row by row."""
    report = router.replay()
    assert report.ok, report
    for target in Target:
        assert journaled(router.engine(target)) == 0, target
    neon = checksums(router.engine(Target.NEON), tables)
    rds = checksums(router.engine(Target.RDS), tables)
    for table in neon:
        assert neon[table] == rds[table], table


class Writers:
    """Threads writing through dual-writing sessions: each owns its keys in ``kv``.

    Writer ``w`` inserts key ``w * 100_000 + i`` then bumps an earlier key's value
    and a shared counter, so the final primary state is known exactly.
    """

    def __init__(self, router: Router, threads: int, key: str = "u1") -> None:
        import threading

        self.router, self.key = router, key
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.done = [0] * threads
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_for(self, commits: int) -> None:
        import time

        deadline = time.monotonic() + 60
        start = sum(self.done)
        while sum(self.done) < start + commits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(self.done) >= start + commits, (self.done, self.errors)

    def _run(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                with self.router.session(self.key) as session, session.begin():
                    session.execute(text("insert into kv values (:k, 0)"), {"k": w * 100_000 + i})
                    session.execute(
                        text("update kv set v = v + 1 where k = :k"),
                        {"k": w * 100_000 + i // 2},
                    )
                    session.execute(
                        text(
                            "insert into counters values ('c', 1) "
                            "on conflict (name) do update set value = counters.value + 1"
                        )
                    )
            except BaseException as exc:  # recorded: the test decides what is allowed
                self.errors.append(exc)
                continue
            i += 1
            self.done[w] = i

    def expected_kv(self) -> dict[int, int]:
        """What the primary must hold: every committed insert and bump, nothing else."""
        rows: dict[int, int] = {}
        for w, count in enumerate(self.done):
            for i in range(count):
                rows[w * 100_000 + i] = 0
                rows[w * 100_000 + i // 2] += 1
        return rows


def kv_rows(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return {k: v for k, v in conn.execute(text("select k, v from kv"))}


def journaled(engine: Engine) -> int:
    with engine.connect() as conn:
        return backlog(conn)
