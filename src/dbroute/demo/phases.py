"""Demo step: walk the migration through every phase and back, guarded by the checks.

An "app" router follows the phase table (``DBROUTE_PHASE_POLL_SECONDS``) and
keeps writing; each phase change goes through the same checks as
``dbroute advance``/``rollback``. One change is refused first (no validation
yet) to show the guard; then the journal is replayed, the databases are
validated, and the change goes through.
"""

from __future__ import annotations

import time
from decimal import Decimal

import psycopg
from rich.table import Table
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from dbroute.demo.context import DemoContext
from dbroute.phases.control import PhaseControl
from dbroute.phases.model import Direction, Phase
from dbroute.phases.render import print_plan, print_status
from dbroute.router import Router
from dbroute.settings import RoutingSettings
from dbroute.target import Target

__all__ = ["WALK", "phases_step"]

DATABASE = "dbroute_demo_phases"

#: The demo's walk: every phase forward, then back to Neon.
WALK: list[tuple[Direction, Phase, Decimal | None]] = [
    (Direction.ADVANCE, Phase.DUAL_WRITE, None),
    (Direction.ADVANCE, Phase.RAMP, Decimal(5)),
    (Direction.ADVANCE, Phase.RAMP, Decimal(50)),
    (Direction.ADVANCE, Phase.RDS_PRIMARY, None),
    (Direction.ADVANCE, Phase.RDS_ONLY, None),
    (Direction.ROLLBACK, Phase.RDS_PRIMARY, None),
    (Direction.ROLLBACK, Phase.DUAL_WRITE, None),
    (Direction.ROLLBACK, Phase.NEON_ONLY, None),
]

_SCHEMA = "create table if not exists demo_orders (user_id text, n int, primary key (user_id, n))"


def phases_step(ctx: DemoContext) -> None:
    """Walk every phase forward and back while an app writes; show status at each step."""
    ctx.heading("Phases: neon_only → dual_write → ramp → rds_primary → rds_only, and back")
    urls = {
        t: _fresh_database(url)
        for t, url in ((Target.NEON, ctx.neon_url), (Target.RDS, ctx.rds_url))
    }
    base = {"neon_url": urls[Target.NEON], "rds_url": urls[Target.RDS]}
    app = Router(RoutingSettings(**base, phase_poll_seconds=0.2))
    control = PhaseControl(RoutingSettings(**base))
    try:
        for target in Target:
            with app.engine(target).begin() as conn:
                conn.execute(text(_SCHEMA))
        app.setup()  # dual-write change capture, before the first mirrored write
        users = [f"user-{n}" for n in range(min(ctx.users, 200))]
        table = Table("change", "checks", "app sees", "rows on neon", "rows on rds", "validated")
        for number, (direction, phase, percent) in enumerate(WALK):
            _write(app, users, number)
            plan = control.plan(direction, phase, percent=percent)
            if not plan.allowed:
                # The guard at work: show why, then do what it asks and check again.
                print_plan(ctx.console, plan, execute=True, result=None)
                _replay_and_validate(app, control)
                plan = control.plan(direction, phase, percent=percent)
            stored, _ = control.execute(plan, by="dbroute demo", reason=f"demo step {number}")
            _wait_for(app, stored.version)
            _write(app, users, 100 + number)
            # Not validated after the first change: the next one is refused for it.
            clean = _replay_and_validate(app, control) if number else None
            state = app.routing_state
            table.add_row(
                str(plan.transition),
                f"{sum(c.ok for c in plan.checks)}/{len(plan.checks)} ok",
                f"{state.phase.value if state.phase else '?'} {state.rds_percent} % "
                f"dual-write {'on' if state.dual_write else 'off'}",
                str(_count(control.engines[Target.NEON])),
                str(_count(control.engines[Target.RDS])),
                "not yet" if clean is None else ("[green]equal" if clean else "[red]DIFFERENT"),
            )
        ctx.console.print(table)
        ctx.console.print("`dbroute status` at the end:")
        print_status(ctx.console, control.status())
    finally:
        app.dispose()
        control.close()


def _fresh_database(server_url: str) -> str:
    url = make_url(server_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{DATABASE}" with (force)'.encode())
        conn.execute(f'create database "{DATABASE}"'.encode())
    return url.set(database=DATABASE).render_as_string(hide_password=False)


def _write(app: Router, users: list[str], n: int) -> None:
    for user in users:
        with app.session(user) as session, session.begin():
            session.execute(text("insert into demo_orders values (:u, :n)"), {"u": user, "n": n})


def _replay_and_validate(app: Router, control: PhaseControl) -> bool | None:
    from dbroute.validate import record_run, validate

    app.replay()
    neon, rds = control.engines[Target.NEON], control.engines[Target.RDS]
    report = validate(neon, rds)
    record_run(neon, rds, report, who="dbroute demo")
    return report.clean


def _wait_for(app: Router, version: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while app.routing_state.phase_version != version and time.monotonic() < deadline:
        time.sleep(0.05)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("select count(*) from demo_orders")).scalar_one())
