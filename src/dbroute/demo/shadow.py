"""Demo step: shadow reads on live traffic, a planted difference, and ``router.shadow_report()``."""

from __future__ import annotations

import logging

from rich.markup import escape
from rich.table import Table
from sqlalchemy import select, text

from dbroute.demo.context import DemoContext
from dbroute.router import Router
from dbroute.settings import RoutingSettings
from dbroute.shadow import ShadowMismatch, ShadowReport
from dbroute.target import Target

__all__ = ["shadow_step"]

_SETUP = """
drop table if exists demo_accounts;
create table demo_accounts (id int primary key, owner text not null, balance numeric(12, 2));
insert into demo_accounts
select g, 'user-' || g, g * 10.5 from generate_series(1, 200) g;
"""
_READS = 300


def shadow_step(ctx: DemoContext) -> None:
    """Shadow every read to the other database; plant one changed row on RDS; report."""
    ctx.heading("Shadow reads: every read re-run on the other database, in the background")
    settings = RoutingSettings(
        neon_url=ctx.neon_url,
        rds_url=ctx.rds_url,
        shadow_read_percent=100,
        shadow_recheck_delay=0.2,
    )
    # One warning per mismatch is the production behaviour; here the table says it all.
    shadow_log = logging.getLogger("dbroute.shadow")
    level = shadow_log.level
    shadow_log.setLevel(logging.ERROR)
    try:
        report, clean, mismatches = _run(settings)
    finally:
        shadow_log.setLevel(level)
    ctx.console.print(_table(report))
    ctx.console.print(
        f"Identical data: {clean.compared} reads compared, {clean.mismatched} mismatches. "
        f"After changing one balance on RDS: {len(mismatches)} mismatches, e.g. {mismatches[0]!r}"
        if mismatches
        else "No mismatch was found: the planted difference was missed (a bug)."
    )


def _run(settings: RoutingSettings) -> tuple[ShadowReport, ShadowReport, list[ShadowMismatch]]:
    with Router(settings) as router:
        for target in Target:
            with router.engine(target).begin() as conn:
                conn.exec_driver_sql(_SETUP)
        mismatches: list[ShadowMismatch] = []
        router.shadow.on_mismatch(mismatches.append)
        _traffic(router)
        router.shadow_flush(60)
        clean = router.shadow_report()
        with router.engine(Target.RDS).begin() as conn:  # the planted difference
            conn.execute(text("update demo_accounts set balance = balance + 1 where id = 42"))
        _traffic(router)
        router.shadow_flush(60)
        return router.shadow_report(), clean, mismatches


def _traffic(router: Router) -> None:
    account = text("select id, owner, balance from demo_accounts where id = :id")
    for n in range(_READS):
        with router.session(f"user-{n}") as session:
            session.execute(account, {"id": n % 200 + 1}).all()
            if n % 10 == 0:
                session.execute(
                    select(text("count(*)"), text("sum(balance)")).select_from(
                        text("demo_accounts")
                    )
                ).one()


def _table(report: ShadowReport) -> Table:
    table = Table(
        "statement", "compared", "mismatched", "lagged", "errors", "p50 primary", "p50 shadow"
    )
    for row in report.statements:
        table.add_row(
            escape(row.statement[:60]),  # SQL text, not rich markup
            str(row.compared),
            str(row.mismatched) if not row.mismatched else f"[red]{row.mismatched}",
            str(row.lagged),
            str(row.errors),
            _ms(row.primary_p50),
            _ms(row.shadow_p50),
        )
    return table


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"
