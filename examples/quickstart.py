"""Routed sessions in a few lines: `python examples/quickstart.py`.

Uses DBROUTE_NEON_URL / DBROUTE_RDS_URL when set; otherwise starts two local
PostgreSQL servers with dbroute's test harness so the example runs anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbroute import Router, Target
from dbroute.testing import start_server_pair


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    user_id: Mapped[str] = mapped_column(String, primary_key=True)
    body: Mapped[str]


async def read_async(router: Router, user: str) -> str:
    async with router.async_session(user) as session:
        return (await session.execute(select(Note.body).where(Note.user_id == user))).scalar_one()


def main() -> None:
    with contextlib.ExitStack() as stack:
        if "DBROUTE_NEON_URL" not in os.environ:
            servers = stack.enter_context(start_server_pair())
            os.environ.update(DBROUTE_NEON_URL=servers.neon.url, DBROUTE_RDS_URL=servers.rds.url)
        os.environ.setdefault("DBROUTE_RDS_PERCENT", "25")

        router = stack.enter_context(Router.from_env())
        for target in Target:  # the schema exists on both databases
            Base.metadata.create_all(router.engine(target))

        users = [f"user-{n}" for n in range(20)]
        for user in users:
            with router.session(user) as session, session.begin():
                session.merge(Note(user_id=user, body=f"hello from {user}"))

        for target in Target:
            with router.engine(target).connect() as conn:
                count = conn.execute(select(func.count()).select_from(Note)).scalar_one()
            print(f"{target.value}: {count} notes")
        print(
            "user-3 lives on",
            router.target_for("user-3").value,
            "and reads:",
            asyncio.run(read_async(router, "user-3")),
        )


if __name__ == "__main__":
    main()
