"""Validation runs recorded on both databases; the latest one read back."""

from __future__ import annotations

from dbroute.validate import last_validation, record_run, validate

from .validate_helpers import Pair


def test_record_and_read_back(pair: Pair) -> None:
    assert last_validation(pair.neon) is None
    pair.both("create table t (id int primary key); insert into t values (1);")
    first = validate(pair.neon, pair.rds)
    record_run(pair.neon, pair.rds, first, who="ci")
    pair.run(pair.rds, "insert into t values (2)")
    second = validate(pair.neon, pair.rds)
    record_run(pair.neon, pair.rds, second, who="cron")
    for engine in (pair.neon, pair.rds):
        latest = last_validation(engine)
        assert latest is not None
        assert (latest.clean, latest.who) == (False, "cron")
        assert latest.summary["rows_differing"] == 1
        assert latest.summary["tables_differing"] == ["public.t"]
    # The dbroute schema is never validated itself.
    assert validate(pair.neon, pair.rds).data.table("public", "t").differences == 1  # type: ignore[union-attr]
    assert all(t.schema != "dbroute" for t in validate(pair.neon, pair.rds).data.tables)  # type: ignore[union-attr]
