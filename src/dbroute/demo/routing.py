"""Demo step: ramp synthetic users from Neon to RDS and show the ramp is monotone."""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table
from sqlalchemy import text

from dbroute.demo.context import DemoContext
from dbroute.router import INFO_TARGET, Router
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["PERCENTAGES", "routing_step"]

PERCENTAGES = [Decimal(p) for p in ("0", "0.1", "1", "5", "25", "50", "100")]

_SCHEMA = """
create table if not exists demo_visits (
    user_id text not null,
    step    int  not null,
    primary key (user_id, step)
)
"""


def routing_step(ctx: DemoContext) -> None:
    """Write one row per user through the router at each percentage; count where rows landed."""
    ctx.heading("Routing: ramping users from Neon to RDS")
    with Router(RoutingSettings(neon_url=ctx.neon_url, rds_url=ctx.rds_url)) as admin:
        for target in Target:
            with admin.engine(target).begin() as conn:
                conn.execute(text(_SCHEMA))
    users = [f"user-{n}" for n in range(ctx.users)]
    table = Table("RDS %", "on Neon", "on RDS", "moved Neon→RDS", "moved RDS→Neon", "rows match")
    previous: dict[str, Target] = {}
    for step, percent in enumerate(PERCENTAGES):
        settings = RoutingSettings(neon_url=ctx.neon_url, rds_url=ctx.rds_url, rds_percent=percent)
        placed: dict[str, Target] = {}
        with Router(settings) as router:
            for user in users:
                with router.session(user) as session, session.begin():
                    placed[user] = session.info[INFO_TARGET]
                    session.execute(
                        text("insert into demo_visits (user_id, step) values (:u, :s)"),
                        {"u": user, "s": step},
                    )
            landed = {t: _count(router, t, step) for t in Target}
        on_rds = sum(1 for t in placed.values() if t is Target.RDS)
        forward = sum(
            1 for u, t in placed.items() if previous.get(u) is Target.NEON and t is Target.RDS
        )
        back = sum(
            1 for u, t in placed.items() if previous.get(u) is Target.RDS and t is Target.NEON
        )
        match = landed[Target.RDS] == on_rds and landed[Target.NEON] == len(users) - on_rds
        table.add_row(
            f"{percent}",
            str(len(users) - on_rds),
            str(on_rds),
            str(forward),
            str(back),
            "yes" if match else "[red]NO",
        )
        previous = placed
    ctx.console.print(table)
    ctx.console.print(
        "Each user was written through router.session(user); the counts are read back from "
        "each server. Raising the percentage only moves users Neon → RDS."
    )


def _count(router: Router, target: Target, step: int) -> int:
    with router.engine(target).connect() as conn:
        count = conn.execute(
            text("select count(*) from demo_visits where step = :s"), {"s": step}
        ).scalar_one()
    return int(count)
