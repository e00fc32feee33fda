"""Routed sessions on two real PostgreSQL servers: rows land where the bucket says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import String, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbroute import Router, RoutingSettings, Target
from dbroute.testing import DatabasePair, libpq_url

MakeRouter = Callable[..., Router]


class Base(DeclarativeBase):
    pass


class Visit(Base):
    __tablename__ = "visits"
    user_id: Mapped[str] = mapped_column(String, primary_key=True)


def create_schema(router: Router) -> None:
    for target in Target:
        with router.engine(target).begin() as conn:
            Base.metadata.create_all(conn)


def rows_on(url: str) -> set[str]:
    """Read the table straight from one server, bypassing dbroute entirely."""
    with psycopg.connect(libpq_url(url)) as conn:
        return {row[0] for row in conn.execute("select user_id from visits")}


def assert_landed(router: Router, databases: DatabasePair, users: list[str]) -> None:
    expected = {t: {u for u in users if router.target_for(u) is t} for t in Target}
    assert expected[Target.NEON]
    assert expected[Target.RDS]
    assert rows_on(databases.neon_url) == expected[Target.NEON]
    assert rows_on(databases.rds_url) == expected[Target.RDS]


USERS = [f"user-{i}" for i in range(300)]


def test_sync_sessions_land_on_their_bucket(
    make_router: MakeRouter, dbroute_databases: DatabasePair
) -> None:
    router = make_router(rds_percent=30)
    create_schema(router)
    for user in USERS:
        with router.session(user) as session, session.begin():
            session.add(Visit(user_id=user))
    assert_landed(router, dbroute_databases, USERS)


async def test_async_sessions_land_on_their_bucket(
    make_router: MakeRouter, dbroute_databases: DatabasePair
) -> None:
    router = make_router(rds_percent=30)
    create_schema(router)

    async def visit(user: str) -> None:
        async with router.async_session(user) as session, session.begin():
            session.add(Visit(user_id=user))

    await asyncio.gather(*(visit(u) for u in USERS))
    assert_landed(router, dbroute_databases, USERS)
    await router.adispose()


def test_many_threads_many_keys(make_router: MakeRouter, dbroute_databases: DatabasePair) -> None:
    router = make_router(rds_percent=50)
    create_schema(router)
    users = [f"t-{i}" for i in range(800)]

    def visit(user: str) -> str:
        with router.session(user) as session, session.begin():
            session.add(Visit(user_id=user))
            # Read back through the same session: it must be the same server.
            found = session.execute(select(Visit.user_id).where(Visit.user_id == user)).scalar_one()
            port = session.execute(text("select current_setting('port')")).scalar_one()
        assert found == user
        return str(port)

    with ThreadPoolExecutor(max_workers=16) as pool:
        ports = list(pool.map(visit, users))
    assert_landed(router, dbroute_databases, users)
    rds_port = str(router.engine(Target.RDS).url.port)
    assert [p == rds_port for p in ports] == [router.target_for(u) is Target.RDS for u in users]


async def test_many_tasks_many_keys(
    make_router: MakeRouter, dbroute_databases: DatabasePair
) -> None:
    router = make_router(rds_percent=70)
    create_schema(router)
    users = [f"a-{i}" for i in range(400)]
    gate = asyncio.Semaphore(40)

    async def visit(user: str) -> None:
        async with gate, router.async_session(user) as session:
            await session.execute(text("insert into visits (user_id) values (:u)"), {"u": user})
            await session.commit()

    await asyncio.gather(*(visit(u) for u in users))
    assert_landed(router, dbroute_databases, users)
    await router.adispose()


def test_overrides_and_kill_switch_reach_the_database(
    make_router: MakeRouter, dbroute_databases: DatabasePair
) -> None:
    router = make_router(rds_percent=0, force_rds=frozenset({"qa-1"}))
    create_schema(router)
    with router.session("qa-1") as session, session.begin():
        session.add(Visit(user_id="qa-1"))
    killed = make_router(rds_percent=100, force_rds=frozenset({"qa-2"}), kill_switch=True)
    with killed.session("qa-2") as session, session.begin():
        session.add(Visit(user_id="qa-2"))
    assert rows_on(dbroute_databases.rds_url) == {"qa-1"}
    assert rows_on(dbroute_databases.neon_url) == {"qa-2"}


def test_session_records_its_route_and_takes_options(make_router: MakeRouter) -> None:
    router = make_router(rds_percent=100)
    with router.session(42, expire_on_commit=False) as session:
        assert session.info == {"dbroute.key": 42, "dbroute.target": Target.RDS}
        assert session.expire_on_commit is False
        assert isinstance(session, router.session_class)


def test_engines_point_at_their_databases(
    make_router: MakeRouter, dbroute_databases: DatabasePair
) -> None:
    router = make_router()
    for target, url in (
        (Target.NEON, dbroute_databases.neon_url),
        (Target.RDS, dbroute_databases.rds_url),
    ):
        with router.engine(target).connect() as conn:
            assert (
                conn.execute(text("select current_database()")).scalar_one()
                == dbroute_databases.name
            )
        assert router.engine(target).url.port == router.async_engine(target).url.port
        assert str(router.engine(target).url.port) in url


def test_pool_settings_reach_the_engine(make_router: MakeRouter) -> None:
    router = make_router(neon_pool={"size": 3, "max_overflow": 1, "recycle": 60})
    pool = router.engine(Target.NEON).pool
    assert pool.size() == 3  # type: ignore[attr-defined]
    assert pool._recycle == 60  # type: ignore[attr-defined]


def test_router_context_manager_closes_pools(make_router: MakeRouter) -> None:
    with make_router() as router:
        with router.session("u") as session:
            session.execute(text("select 1"))
        assert router.engine(Target.NEON).pool.checkedin() == 1  # type: ignore[attr-defined]
    assert router.engine(Target.NEON).pool.checkedin() == 0  # type: ignore[attr-defined]


async def test_async_context_manager(make_router: MakeRouter) -> None:
    async with make_router(rds_percent=100) as router, router.async_session("u") as session:
        assert (await session.execute(text("select 1"))).scalar_one() == 1
    assert router.async_engine(Target.RDS).pool.checkedin() == 0  # type: ignore[attr-defined]


def test_unreachable_database_fails_loudly(dbroute_databases: DatabasePair) -> None:
    # A routed session never silently falls back to the other database.
    settings = RoutingSettings(
        neon_url=dbroute_databases.neon_url,
        rds_url="postgresql://postgres@127.0.0.1:1/nowhere",
        rds_percent=100,
        rds_pool={"connect_timeout": 1},
    )
    with (
        Router(settings) as router,
        router.session("u") as session,
        pytest.raises(OperationalError, match=r"127\.0\.0\.1"),
    ):
        session.execute(text("select 1"))
