"""Happy path: every way an application writes is mirrored before the primary commits."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import ForeignKey, delete, insert, make_url, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from tests.dualwrite.support import (
    assert_converged,
    checksums,
    create_schema,
    kv_rows,
    wait_for_backlog_zero,
    write,
)

from dbroute.dualwrite.journal import backlog, pending_keys
from dbroute.target import Target


class Base(DeclarativeBase):
    """The ORM models of the test schema (tests/dualwrite/conftest.py)."""


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str]
    balance: Mapped[Decimal] = mapped_column(server_default="0")
    entries: Mapped[list[Entry]] = relationship(
        back_populates="account", passive_deletes=True, cascade="all, delete-orphan"
    )


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    amount: Mapped[Decimal]
    note: Mapped[str | None]
    account: Mapped[Account] = relationship(back_populates="entries")


def assert_mirrored(router):
    """Equal row by row, and nothing left to replay: mirrored at commit, not later."""
    wait_for_backlog_zero(router)
    neon = checksums(router.engine(Target.NEON))
    assert neon == checksums(router.engine(Target.RDS))
    return neon


def test_orm_unit_of_work(dual_router, metric_value):
    before = metric_value("dbroute.dualwrite.mirrored", **{"dbroute.target": "neon"})
    with dual_router.session("u1") as session, session.begin():
        account = Account(owner="ann", entries=[Entry(amount=Decimal("1.50"), note="a")])
        session.add_all([account, Account(owner="bob")])
    with dual_router.session("u1") as session, session.begin():
        ann = session.scalars(select(Account).where(Account.owner == "ann")).one()
        ann.balance = Decimal("99.99")
        ann.entries.append(Entry(amount=Decimal(2)))
        session.delete(session.scalars(select(Account).where(Account.owner == "bob")).one())
    sums = assert_mirrored(dual_router)
    assert len(sums["accounts"]) == 1
    assert len(sums["entries"]) == 2
    assert len(sums["audit"]) == 3  # the app trigger's rows are mirrored as rows
    assert metric_value("dbroute.dualwrite.mirrored", **{"dbroute.target": "neon"}) > before


def test_core_bulk_returning_and_raw_sql(dual_router):
    accounts = Account.__table__
    with dual_router.session("u1") as session, session.begin():
        ids = session.scalars(
            insert(accounts).returning(accounts.c.id),
            [{"owner": f"o{i}", "balance": i} for i in range(50)],
        ).all()
        session.execute(update(accounts).where(accounts.c.id.in_(ids[:10])).values(balance=0))
        session.execute(delete(accounts).where(accounts.c.id.in_(ids[40:])))
        session.execute(text("update accounts set balance = balance + 1 where id % 3 = 0"))
        session.execute(text("insert into counters values ('hits', 1)"))
        session.execute(
            text(
                "insert into counters values ('hits', 1) "
                "on conflict (name) do update set value = counters.value + 1"
            )
        )
    sums = assert_mirrored(dual_router)
    assert len(sums["accounts"]) == 40
    with dual_router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select value from counters")).scalar_one() == 2


def test_cascade_and_primary_key_change(dual_router):
    with dual_router.session("u1") as session, session.begin():
        session.execute(text("insert into accounts (owner) values ('c')"))
        session.execute(
            text(
                "insert into entries (account_id, amount) select id, 5 from accounts, "
                "generate_series(1, 20)"
            )
        )
        session.execute(text("insert into kv values (1, 1), (2, 2)"))
    with dual_router.session("u1") as session, session.begin():
        session.execute(text("delete from accounts"))  # ON DELETE CASCADE removes the entries
        session.execute(text("update kv set k = k + 10"))  # keys change: old rows go, new come
    sums = assert_mirrored(dual_router)
    assert sums["entries"] == []
    assert [pk for pk, _ in sums["kv"]] == ["11", "12"]


def test_generated_values_equal_on_both_sides(dual_router):
    with dual_router.session("u1") as session, session.begin():
        session.execute(text("insert into accounts (owner, balance) values ('d', 21)"))
    columns = "id, created_at, token, doubled"
    rows = {}
    for target in Target:
        with dual_router.engine(target).connect() as conn:
            rows[target] = conn.execute(text(f"select {columns} from accounts")).one()
    assert rows[Target.NEON] == rows[Target.RDS]
    assert rows[Target.RDS].doubled == 42


def test_identifiers_with_quotes_and_backslashes(dual_router):
    table = r'"odd\tab ""x"""'
    create_schema(dual_router, rf"""create table {table} ("k\ey" int primary key, "it's" text)""")
    dual_router.setup()
    with dual_router.session("u1") as session, session.begin():
        session.execute(text(f"insert into {table} values (1, 'a'), (2, 'b')"))
        session.execute(text(f"""update {table} set "it's" = 'c' where "k\\ey" = 2"""))
    wait_for_backlog_zero(dual_router)  # mirrored at commit, not journaled
    tables = {table: r'"k\ey"'}
    sums = checksums(dual_router.engine(Target.NEON), tables)
    assert len(sums[table]) == 2
    assert sums == checksums(dual_router.engine(Target.RDS), tables)


def test_rollback_and_savepoints(dual_router):
    with dual_router.session("u1") as session:
        session.execute(text("insert into kv values (1, 1)"))
        session.rollback()
        with session.begin():
            session.execute(text("insert into kv values (2, 2)"))
            nested = session.begin_nested()
            session.execute(text("insert into kv values (3, 3)"))
            nested.rollback()
            with session.begin_nested():
                session.execute(text("insert into kv values (4, 4)"))
    sums = assert_mirrored(dual_router)
    assert [pk for pk, _ in sums["kv"]] == ["2", "4"]


def test_routed_to_rds_mirrors_to_neon(make_router):
    router = make_router(dual_write=True, force_rds="r1")
    create_schema(router)
    router.setup()
    with router.session("r1") as session, session.begin():
        session.execute(text("insert into kv values (7, 7)"))
    assert assert_mirrored(router)["kv"]


def test_mirror_connections_use_the_mirror_url(make_router, dbroute_databases):
    """DBROUTE_RDS_MIRROR_URL (a direct endpoint when the app's URL is a pooler's)."""
    admin = make_router().engine(Target.RDS)
    with admin.begin() as conn:  # a role of the RDS server's own tells the connections apart
        if not conn.execute(
            text("select rolsuper from pg_roles where rolname = current_user")
        ).scalar():
            pytest.skip("creating a role needs a superuser on the test server")
        conn.execute(text("drop role if exists dbroute_mirror_test"))
        conn.execute(text("create role dbroute_mirror_test superuser login"))
    try:
        mirror_url = make_url(dbroute_databases.rds_url).set(username="dbroute_mirror_test")
        router = make_router(
            dual_write=True, rds_mirror_url=mirror_url.render_as_string(hide_password=False)
        )
        create_schema(router)
        router.setup()
        write(router, "user-1", "insert into kv values (1, 1)")
        assert kv_rows(router.engine(Target.RDS)) == {1: 1}
        with admin.connect() as conn:
            users = conn.execute(
                text(
                    "select distinct usename from pg_stat_activity where "
                    "application_name = 'dbroute-dualwrite' and datname = current_database()"
                )
            ).scalars()
            assert list(users) == ["dbroute_mirror_test"]
        router.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where usename = 'dbroute_mirror_test'"
                )
            )
            conn.execute(text("drop role dbroute_mirror_test"))


def test_writes_outside_the_app_wait_in_the_journal(dual_router):
    with dual_router.engine(Target.NEON).begin() as conn:  # e.g. psql or a cron job
        conn.execute(text("insert into kv values (1, 1), (2, 2)"))
    with dual_router.engine(Target.NEON).connect() as conn:
        assert pending_keys(conn, "public", "kv") == {("1",), ("2",)}
        assert backlog(conn) == 2
    report = dual_router.replay()
    assert report.replayed == 2
    assert report.ok
    assert_mirrored(dual_router)


def test_dual_write_off_mirrors_nothing(make_router):
    router = make_router()
    create_schema(router)
    router.setup()
    with router.session("u1") as session, session.begin():
        session.execute(text("insert into kv values (1, 1)"))
    with router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select count(*) from kv")).scalar_one() == 0
    with router.engine(Target.NEON).connect() as conn:
        assert backlog(conn) == 1  # captured all the same: replay catches up
    assert router.replay().replayed == 1


@pytest.mark.asyncio
async def test_async_sessions(dual_router):
    async with dual_router.async_session("u1") as session, session.begin():
        session.add(Account(owner="async", entries=[Entry(amount=Decimal(3))]))
        await session.execute(text("insert into kv values (5, 5)"))
    async with dual_router.async_session("u1") as session, session.begin():
        await session.execute(text("update kv set v = v * 10"))
        account = (await session.scalars(select(Account))).one()
        await session.delete(account)
    sums = assert_mirrored(dual_router)
    assert sums["entries"] == []
    assert len(sums["kv"]) == 1
    await dual_router.adispose()


def test_large_transactions_are_left_to_replay(make_router, metric_value):
    router = make_router(dual_write=True, dual_write_max_rows=100)
    create_schema(router)
    router.setup()
    before = metric_value("dbroute.dualwrite.journaled", **{"dbroute.target": "neon"})
    with router.session("u1") as session, session.begin():
        session.execute(text("insert into kv select g, g from generate_series(1, 101) g"))
    with router.session("u1") as session, session.begin():
        session.execute(text("insert into kv values (0, 0)"))  # small: mirrored at once
    with router.engine(Target.NEON).connect() as conn:
        assert backlog(conn) == 101
    with router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text("select k from kv")).scalars().all() == [0]
    assert metric_value("dbroute.dualwrite.journaled", **{"dbroute.target": "neon"}) == before + 101
    assert_converged(router)


def test_row_images_are_read_by_primary_key_not_by_scanning(dual_router):
    # Every commit reads its rows' images: a plan that scans the table (a hash
    # join) costs in proportion to the table, not to the rows written.
    write(dual_router, "u1", "insert into kv select g, g from generate_series(1, 5000) g")
    with dual_router.engine(Target.NEON).begin() as conn:
        conn.execute(text("analyze kv"))
    # This backend's counts not yet reported (PostgreSQL 15+: maybe earlier ones too).
    scans = text("select seq_scan, idx_scan from pg_stat_xact_user_tables where relname = 'kv'")
    with dual_router.engine(Target.NEON).begin() as conn:
        before = conn.execute(scans).one()
        groups = '[{"schema": "public", "table": "kv", "keys": [["7"], ["8"], ["0"]]}]'
        images = conn.execute(text("select dbroute.images(cast(:g as jsonb))"), {"g": groups})
        (group,) = images.scalar_one()
        after = conn.execute(scans).one()
    assert sorted(row["k"] for row in group["rows"]) == [7, 8]
    assert group["gone"] == [["0"]]
    assert after.seq_scan == before.seq_scan
    assert after.idx_scan == before.idx_scan + 3


def test_columns_named_like_the_generated_functions_variables(make_router):
    router = make_router(dual_write=True)
    names = (
        *("keys", "rows", "gone", "got", "expected", "changed", "one", "part", "result"),
        *("payload", "origin_xid", "force", "dedicated", "pending", "conflicts", "ords"),
        *("grps", "i", "g", "me", "groups", "only_table", "n_keys", "tx", "key_"),
    )
    columns = ", ".join(f'"{name}" text' for name in names)
    create_schema(router, f"create table odd (key int primary key, {columns});")
    router.setup()
    values = ", ".join(f"'{name}'" for name in names)
    write(router, "u1", f"insert into odd values (1, {values}), (2, {values})")
    write(
        router,
        "u1",
        "update odd set rows = 'changed' where key = 1",
        "delete from odd where key = 2",
    )
    with router.engine(Target.RDS).connect() as conn:
        assert conn.execute(text('select key, "rows", keys from odd')).all() == [
            (1, "changed", "keys")
        ]
    assert_converged(router, {"odd": "key"})


_BACKLOG = """
insert into dbroute.journal (kind, table_schema, table_name, pk, xid)
select 'change', 'public', 'kv', array[(100000 + g)::text], '1'::xid8
from generate_series(1, 5000) g;
analyze dbroute.journal;
"""
_JOURNAL_SCANS = text(
    "select seq_scan from pg_stat_xact_user_tables "
    "where schemaname = 'dbroute' and relname = 'journal'"
)


def test_the_commit_path_probes_the_journal_by_key_whatever_the_backlog(dual_router):
    # A backlog (an outage, writes outside the app, a ramp) must not make each
    # commit scan it: collect on the primary, the conflict check on the secondary.
    for target in Target:
        with dual_router.engine(target).begin() as conn:
            conn.exec_driver_sql(_BACKLOG)
    with dual_router.engine(Target.NEON).connect() as conn, conn.begin():
        conn.execute(text("insert into kv values (1, 1)"))
        before = conn.execute(_JOURNAL_SCANS).scalar_one()
        collected = conn.execute(text("select * from dbroute.collect(10000)")).one()
        payload, keys, table = collected.payload, collected.n_keys, collected.only_table
        assert conn.execute(_JOURNAL_SCANS).scalar_one() == before
        conn.rollback()
    assert keys == 1
    # The generic path, and the one-table path commits take.
    for apply in ("dbroute.apply", f"dbroute.dw_apply_{table}"):
        with dual_router.engine(Target.RDS).connect() as conn, conn.begin():
            before = conn.execute(_JOURNAL_SCANS).scalar_one()
            conn.execute(text(f"select {apply}(cast(:p as jsonb))"), {"p": payload})
            assert conn.execute(_JOURNAL_SCANS).scalar_one() == before
            assert conn.execute(text("select v from kv where k = 1")).scalar_one() == 1
            conn.rollback()


_INTENT_SCANS = text(
    "select seq_scan from pg_stat_xact_user_tables "
    "where schemaname = 'dbroute' and relname = 'intents'"
)
_FEW_INTENTS = """
insert into dbroute.intents (xid, keys) select g::text::xid8, '[]' from generate_series(1, 40) g;
"""
_CONFIRM_FEW = "select dbroute.confirm(array(select g::text::xid8 from generate_series(1, 40) g))"
_DEAD_INTENTS = """
insert into dbroute.intents (xid, keys)
select g::text::xid8, '[]' from generate_series(1000, 5999) g;
delete from dbroute.intents where xid >= '1000';
insert into dbroute.intents (xid, keys) values ('7', '[]');
"""
_INTENTS_LEFT = text("select count(*) from dbroute.intents")
_TWO_INTENTS = text("insert into dbroute.intents (xid, keys) values ('7', '[]'), ('8', '[]')")
# What replay does with an intent row while it settles it.
_HOLD_7 = text("select 1 from dbroute.intents where xid = '7' for update")


def test_confirmations_find_intents_by_index_whatever_the_statistics(dual_router):
    # A mirror connection plans confirm() once, maybe while the table is empty,
    # and keeps that plan; then its pages fill with confirmed (dead) intents
    # until autovacuum. A sequential scan per confirmed writer would read them
    # all, for every commit mirrored.
    engine = dual_router.engine(Target.RDS)
    with engine.connect() as conn:
        conn.exec_driver_sql(_FEW_INTENTS)  # confirmed, so planned, while it holds 40
        conn.execute(text(_CONFIRM_FEW))
        conn.commit()
        with engine.begin() as other:
            other.exec_driver_sql(_DEAD_INTENTS)
        before = conn.execute(_INTENT_SCANS).scalar_one()
        assert conn.execute(text("select cast(dbroute.confirm('{7}') as text[])")).scalar() == []
        assert conn.execute(_INTENT_SCANS).scalar_one() == before
        assert backlog(conn) == 0
        conn.commit()


def test_confirmations_never_wait_for_an_intent_replay_holds(dual_router):
    # A confirmation that waited would stall the thread that sends them all.
    engine = dual_router.engine(Target.RDS)
    with engine.begin() as conn:
        conn.execute(_TWO_INTENTS)
    with engine.connect() as holder, holder.begin(), engine.connect() as conn:
        holder.execute(_HOLD_7)
        conn.execute(text("set local lock_timeout = '5s'"))  # waiting would fail, not hang
        left = conn.execute(text("select cast(dbroute.confirm('{7,8}') as text[])")).scalar()
        assert left == ["7"]  # 8 gone, 7 skipped and handed back
        assert conn.execute(_INTENTS_LEFT).scalar_one() == 1
        conn.commit()


def test_a_confirmation_held_back_by_a_lock_is_tried_again(dual_router):
    # The lock's holder may be a replayer that then rolls back, leaving the row
    # to the confirmed writer: it must not stay forever.
    engine = dual_router.engine(Target.RDS)
    with engine.begin() as conn:
        conn.execute(_TWO_INTENTS)
        conn.execute(text("delete from dbroute.intents where xid = '8'"))
        locked = conn.execute(text("select cast(dbroute.confirm('{}') as text[])")).scalar_one()
        assert locked == []  # nothing asked, nothing left
    secondary = dual_router._dual_writer.secondaries[Target.RDS]
    with engine.connect() as holder, holder.begin():
        holder.execute(_HOLD_7)
        secondary.confirm("7")  # the writer of xid 7 committed
        secondary.flush_confirmed()  # skipped, not waited for: the row is held
        with engine.connect() as conn:
            assert conn.execute(_INTENTS_LEFT).scalar_one() == 1
    # Released: the next flush (this one, or the background one) removes it.
    secondary.flush_confirmed()
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while conn.execute(_INTENTS_LEFT).scalar_one() and time.monotonic() < deadline:
            conn.rollback()  # a new snapshot
            time.sleep(0.05)
        assert conn.execute(_INTENTS_LEFT).scalar_one() == 0
