"""The dual-write demo step: the secondary blocked, the backlog, replay, equal checksums."""

from __future__ import annotations

from rich.console import Console
from sqlalchemy import create_engine, text

from dbroute.demo import DemoContext, run_demo
from dbroute.demo.dualwrite import dualwrite_step


def test_dualwrite_demo_step(dbroute_databases):
    console = Console(record=True, width=140)
    context = DemoContext(dbroute_databases.neon_url, dbroute_databases.rds_url, console, users=60)
    run_demo(context, [dualwrite_step])
    out = console.export_text()
    assert "RDS blocked" in out
    assert "0 conflicts, backlog now (0, 0)" in out
    assert "→ equal" in out
    engine = create_engine(dbroute_databases.neon_url)
    try:
        with engine.connect() as conn:  # the step removed what it installed
            assert conn.execute(text("select to_regclass('dbroute.journal')")).scalar() is None
    finally:
        engine.dispose()
