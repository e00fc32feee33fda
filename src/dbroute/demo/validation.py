"""Demo step: plant differences, find them with ``validate``, repair, validate again: equal."""

from __future__ import annotations

from sqlalchemy import Connection

from dbroute.demo.context import DemoContext
from dbroute.target import Target
from dbroute.validate import DataOptions, compare_data, compare_schemas, repair, sync_sequences
from dbroute.validate.connect import engine_pair
from dbroute.validate.render import render_data, render_repair, render_schema, render_sequences

__all__ = ["validation_step"]

_TABLE = "public.demo_accounts"

_SETUP = """
drop table if exists demo_accounts;
create table demo_accounts (
    id         bigserial primary key,
    email      text not null,
    nickname   text,
    balance    numeric(12, 2) not null default 0,
    profile    jsonb,
    updated_at timestamptz not null
);
insert into demo_accounts (id, email, nickname, balance, profile, updated_at)
select g, 'user' || g || '@example.com', case when g % 5 = 0 then null else 'nick' || g end,
       g * 1.5, jsonb_build_object('tier', g % 3),
       timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'
from generate_series(1, {rows}) g;
"""

# What a bad copy leaves behind: a lost row, a stray row, changed values (NULL vs ''), and
# sequences that never moved on RDS because the rows arrived with their keys.
_PLANT = """
update demo_accounts set nickname = '' where id = 10;
update demo_accounts set balance = balance + 0.01, profile = '{{"tier": 9}}' where id = {mid};
delete from demo_accounts where id = {last};
insert into demo_accounts (id, email, updated_at) values ({stray}, 'stray@example.com', now());
select setval('demo_accounts_id_seq', 1, false);
"""


def validation_step(ctx: DemoContext) -> None:
    """Compare Neon and RDS, repair RDS from Neon, prove them equal, resync sequences."""
    ctx.heading("Validation: find exactly the rows that differ, repair them, prove equality")
    rows = max(ctx.users, 100)
    with engine_pair(ctx.neon_url, ctx.rds_url) as (neon, rds):
        for engine in (neon, rds):
            with engine.begin() as conn:
                _script(conn, _SETUP.format(rows=rows))
        with rds.begin() as conn:
            plant = _PLANT.format(mid=rows // 2, last=rows, stray=rows + 100)
            _script(conn, plant)
        options = DataOptions(tables=[_TABLE])
        render_schema(ctx.console, compare_schemas(neon, rds))
        before = compare_data(neon, rds, options)
        render_data(ctx.console, before)
        render_repair(ctx.console, repair(neon, rds, before, Target.NEON, apply=True))
        render_data(ctx.console, compare_data(neon, rds, options))
        render_sequences(ctx.console, sync_sequences(neon, rds, Target.NEON), dry_run=False)
        ctx.console.print(
            "The row hashes were computed by each server (only checksums and the "
            "differing segments travelled); after the repair the data is equal and the "
            "RDS sequence is past every key, so the first insert there will not collide."
        )


def _script(conn: Connection, sql: str) -> None:
    # No bind parameters here: every "%" is the SQL modulo operator.
    conn.exec_driver_sql(sql.replace("%", "%%"))
