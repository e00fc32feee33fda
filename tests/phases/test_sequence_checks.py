"""The ``sequences:<db>`` check: each primary's next values are free, and apart in ramp.

Real databases: Neon generates keys, RDS gets copies (as the initial copy and
the mirror leave them), and ``dbroute sequences sync`` moves RDS's sequences.
"""

from __future__ import annotations

import json
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import text

from dbroute.cli import main
from dbroute.phases.checks import DEFAULT_LIMITS, Limits
from dbroute.phases.model import Direction, Phase
from dbroute.target import Target
from dbroute.validate import sync_sequences

from .helpers import force_phase

# The journal and validation are other checks' business here.
SKIP = ["backlog", "validation"]
DDL = "create table items (id bigserial primary key, name text)"


def failed(plan) -> dict[str, str]:
    return {c.name: c.detail for c in plan.checks if not c.passed}


def run(control, target: Target, *statements: str) -> None:
    with control.engines[target].begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def copied_pair(control, rows: int = 100) -> None:
    """``items`` on both: Neon generated ``rows`` keys, RDS holds copies, sequences synced."""
    for target in Target:
        run(control, target, DDL)
    run(
        control, Target.NEON, f"insert into items (name) select 'n' from generate_series(1, {rows})"
    )
    run(control, Target.RDS, f"insert into items select g, 'n' from generate_series(1, {rows}) g")
    neon, rds = control.engines[Target.NEON], control.engines[Target.RDS]
    sync_sequences(neon, rds, Target.NEON)


def ramp(control, limits: Limits = DEFAULT_LIMITS, percent: int = 50):
    return control.plan(
        Direction.ADVANCE, Phase.RAMP, percent=Decimal(percent), limits=limits, skip=SKIP
    )


def test_ramp_is_refused_until_the_sequences_have_headroom(control):
    copied_pair(control)
    # One primary (dual_write): a sequence past every key is enough.
    plan = control.plan(Direction.ADVANCE, Phase.DUAL_WRITE)
    assert plan.allowed, plan.refusal()
    force_phase(control, Phase.DUAL_WRITE)
    # Two primaries with both sequences at 101: they would hand out the same ids.
    plan = ramp(control)
    assert list(failed(plan)) == ["sequences:rds"]
    detail = failed(plan)["sequences:rds"]
    assert "public.items_id_seq (next 101): its next 1000000 values [101, 1000100]" in detail
    assert "overlap neon's next 1000000 [101, 1000100]" in detail
    assert detail.endswith("run `dbroute sequences sync --from neon --headroom 1000000000`")
    sync_sequences(
        control.engines[Target.NEON],
        control.engines[Target.RDS],
        Target.NEON,
        headroom=1_000_000_000,
    )
    plan = ramp(control)
    assert plan.allowed, plan.refusal()
    checks = {c.name: c.detail for c in plan.checks}
    assert "apart from neon's" in checks["sequences:rds"]
    # A window wider than the headroom is refused again: the window is the margin.
    plan = ramp(control, Limits(sequence_window=2_000_000_000))
    assert "overlap neon's" in failed(plan)["sequences:rds"]


def test_neon_approaching_the_rds_range_is_refused_early(control):
    copied_pair(control)
    force_phase(control, Phase.DUAL_WRITE)
    neon, rds = control.engines[Target.NEON], control.engines[Target.RDS]
    sync_sequences(neon, rds, Target.NEON, headroom=1000)  # RDS next 1101
    assert ramp(control, Limits(sequence_window=500)).allowed
    force_phase(control, Phase.RAMP, Decimal(50))
    # An RDS user's row (id 1101), mirrored to Neon; Neon's users take 600 ids.
    run(control, Target.RDS, "insert into items (name) values ('r')")
    run(control, Target.NEON, "insert into items values (1101, 'r')")
    run(control, Target.NEON, "insert into items (name) select 'n' from generate_series(1, 600)")
    plan = ramp(control, Limits(sequence_window=500), percent=60)
    detail = failed(plan)["sequences:neon"]
    assert "public.items_id_seq (next 701): key 1101 of public.items.id" in detail
    assert "within its next 500 values [701, 1200]" in detail
    assert detail.endswith("run `dbroute sequences sync --from rds --headroom 1000000000`")
    assert "overlap neon's next 500 [701, 1200]" in failed(plan)["sequences:rds"]
    # The advice works: Neon moves past RDS's range, and the two are apart again.
    sync_sequences(neon, rds, Target.RDS, headroom=1000)
    plan = ramp(control, Limits(sequence_window=500), percent=60)
    assert plan.allowed, plan.refusal()


def test_a_key_only_on_the_other_database_needs_replay_first(control):
    copied_pair(control)
    force_phase(control, Phase.DUAL_WRITE)
    neon, rds = control.engines[Target.NEON], control.engines[Target.RDS]
    sync_sequences(neon, rds, Target.NEON, headroom=1000)
    run(control, Target.NEON, "insert into items values (1200, 'not mirrored yet')")
    detail = failed(ramp(control, Limits(sequence_window=500)))["sequences:rds"]
    assert "key 1200 of public.items.id on neon (not here yet)" in detail
    assert "run `dbroute replay`, then `dbroute sequences sync --from neon --headroom" in detail


def test_one_primary_behind_its_keys_is_told_to_sync_without_headroom(control):
    copied_pair(control)
    force_phase(control, Phase.DUAL_WRITE)
    force_phase(control, Phase.RAMP, Decimal(100))
    force_phase(control, Phase.RDS_PRIMARY)
    # Neon's sequence went back (a restore on Neon, say): behind the keys it holds.
    run(control, Target.NEON, "select setval('items_id_seq', 1, false)")
    plan = control.plan(Direction.ROLLBACK, Phase.DUAL_WRITE, skip=SKIP)
    assert list(failed(plan)) == ["sequences:neon"]
    assert failed(plan)["sequences:neon"].endswith("run `dbroute sequences sync --from rds`")


def test_cli_headroom_and_sequence_window(control, dbroute_databases, monkeypatch):
    monkeypatch.setenv("DBROUTE_NEON_URL", dbroute_databases.neon_url)
    monkeypatch.setenv("DBROUTE_RDS_URL", dbroute_databases.rds_url)
    copied_pair(control)
    force_phase(control, Phase.DUAL_WRITE)
    cli = CliRunner()
    advance = ["advance", "--to", "ramp", "--percent", "5", "--json", "--skip", "validation"]
    refused = cli.invoke(main, advance)
    assert refused.exit_code == 1, refused.output
    synced = cli.invoke(
        main, ["sequences", "sync", "--from", "neon", "--headroom", "1000", "--json"]
    )
    assert synced.exit_code == 0, synced.output
    assert [c["after"] for c in json.loads(synced.output)] == [1101]
    # The default window (a million) is wider than this headroom; a narrower one passes.
    assert cli.invoke(main, advance).exit_code == 1
    narrow = cli.invoke(main, [*advance, "--sequence-window", "1000"])
    assert narrow.exit_code == 0, narrow.output
    checks = {c["name"]: c for c in json.loads(narrow.output)["checks"]}
    assert checks["sequences:rds"]["ok"]
    bad = cli.invoke(main, ["sequences", "sync", "--from", "neon", "--headroom", "-1"])
    assert bad.exit_code == 2


def without_room(control) -> dict[Target, list[str] | str]:
    status = control.status()
    return {
        t: v if isinstance(v, str) else [b.sequence for b in v]
        for t, v in status.sequences_without_room.items()
    }


def test_status_shows_the_rule_the_check_applies(control):
    """`dbroute status` counts what the sequences check would refuse, nothing else."""
    copied_pair(control)
    assert without_room(control) == {Target.NEON: [], Target.RDS: []}
    # A key far beyond the window is no threat (the old "behind the max key" rule said it was).
    run(control, Target.NEON, "insert into items values (50000000, 'far')")
    assert without_room(control) == {Target.NEON: [], Target.RDS: []}
    # A key inside Neon's next values is.
    run(control, Target.NEON, "insert into items values (150, 'near')")
    assert without_room(control) == {Target.NEON: ["public.items_id_seq"], Target.RDS: []}
    detail = control.status().sequences_without_room[Target.NEON][0].detail
    assert "key 150 of public.items.id" in detail
    # In ramp both generate keys: RDS's window must also be apart from Neon's.
    run(control, Target.NEON, "delete from items where id = 150")
    force_phase(control, Phase.DUAL_WRITE)
    force_phase(control, Phase.RAMP, 50)
    status = without_room(control)
    assert status[Target.RDS] == ["public.items_id_seq"]
    assert "overlap" in control.status().sequences_without_room[Target.RDS][0].detail
