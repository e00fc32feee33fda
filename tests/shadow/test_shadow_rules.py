"""What is shadowed and what is skipped, and per-statement control (real PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import ProgrammingError

from dbroute import Target
from dbroute.errors import ShadowReadsDisabledError
from dbroute.shadow import Verdict


def test_unsafe_reads_are_skipped_with_their_reason(shadow_router):
    router = shadow_router()
    on_rds_differs(router)
    with router.session("k") as session, session.begin():
        session.execute(text("select * from items where id = 1 for update"))
        session.execute(text("select id, now() from items"))
        session.execute(text("select id from items limit 3"))
        session.execute(text("select id from items").execution_options(dbroute_shadow=False))
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.compared == 0
    assert report.skipped == {
        "locking": 1,
        "volatile": 1,
        "nondeterministic": 1,
        "opted_out": 1,
    }


def test_reads_after_a_write_in_the_same_transaction_are_skipped(shadow_router):
    router = shadow_router()
    with router.session("k") as session:
        with session.begin():
            session.execute(text("select id from items"))  # shadowed
            session.execute(text("update items set name = 'mine' where id = 1"))
            session.execute(text("select id, name from items"))  # sees its own write: skipped
        session.execute(text("select id, name from items where id > 1"))  # new transaction
        session.rollback()
        # A write as the very first statement (it begins the transaction) counts too.
        session.execute(text("delete from items where id = 20"))
        session.execute(text("select id from items"))
        session.rollback()
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"pending_writes": 2}
    assert report.compared == 2


def test_direct_engine_use_is_never_shadowed(shadow_router):
    router = shadow_router()
    with router.engine(Target.NEON).connect() as conn:
        conn.execute(text("select id from items"))
    assert router.shadow_flush(30)
    assert router.shadow_report().compared == 0


def test_statements_on_the_session_connection_are_covered(shadow_router):
    router = shadow_router()
    with router.session("k") as session:
        connection = session.connection()
        connection.execute(text("select id from items where id < 5"))  # shadowed
        # The driver's no-parameter path, shadowed too, and also without formatting
        # (a parameter-less shadow would fail on the literal %).
        no_parameters = {"no_parameters": True}
        like = "select id from items where name like 'item-1%' order by id"
        assert len(connection.exec_driver_sql(like, None, no_parameters).all()) == 11
        connection.execute(text("update items set name = 'mine' where id = 1"))
        session.execute(text("select id, name from items"))  # sees its own write: skipped
        session.rollback()
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.compared, report.mismatched, report.errors) == (2, 0, 0)
    assert report.skipped == {"pending_writes": 1}


def test_application_cursor_listeners_still_see_shadowed_reads(shadow_router):
    router = shadow_router()
    seen = []

    @event.listens_for(router.engine(Target.NEON), "after_cursor_execute")
    def observe(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, cursor.rowcount))

    with router.session("k") as session:
        assert router.target_for("k") is Target.NEON
        assert len(session.execute(text("select id from items where id < 5")).all()) == 4
    assert router.shadow_flush(30)
    assert router.shadow_report().compared == 1
    assert ("select id from items where id < 5", 4) in seen


def test_a_failing_read_raises_to_the_caller_as_without_shadowing(shadow_router):
    router = shadow_router()
    with router.session("k") as session:
        with pytest.raises(ProgrammingError, match="no_such_table"):
            session.execute(text("select id from no_such_table"))
        session.rollback()
        assert session.execute(text("select count(*) from items")).scalar_one() == 20
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert (report.compared, report.errors, report.skipped) == (1, 0, {})


def test_per_statement_and_global_callables(shadow_router):
    router = shadow_router()
    seen = []
    router.shadow.publish(seen.append)
    on_rds_differs(router)
    lenient = {"dbroute_shadow_compare": lambda primary, shadow: len(primary) == len(shadow)}
    ignore = {"dbroute_shadow_ignore": lambda primary, shadow: True}
    with router.session("k") as session:
        session.execute(text("select id, name from items").execution_options(**lenient))
        session.execute(text("select id, name from items").execution_options(**ignore))
        session.execute(text("select name from items"))
    assert router.shadow_flush(30)
    router.shadow.ignore(lambda primary, shadow: tuple(c.name for c in primary.columns) != ("id",))
    with router.session("k") as session:
        session.execute(text("select name from items"))
    assert router.shadow_flush(30)
    # Reads with user callables are judged in the application, the others in the
    # worker: publication order is only kept per kind, so compare per statement.
    by_statement: dict[str, list[Verdict]] = {}
    for outcome in seen:
        by_statement.setdefault(outcome.statement, []).append(outcome.verdict)
    assert by_statement == {
        "select id, name from items": [Verdict.MATCH, Verdict.IGNORED],
        "select name from items": [Verdict.MISMATCH, Verdict.IGNORED],
    }


def test_failing_user_callable_is_an_error_not_an_exception(shadow_router):
    router = shadow_router()
    on_rds_differs(router)

    @router.shadow.ignore
    def broken(primary, shadow):
        raise RuntimeError("bug in user code")

    with router.session("k") as session:
        assert len(session.execute(text("select id, name from items")).all()) == 20
    assert router.shadow_flush(30)
    assert router.shadow_report().errors == 1


def test_sampling_with_a_seed_is_deterministic_per_query(make_router):
    from .shadow_helpers import seed

    counts = []
    for attempt in range(2):  # two routers (two processes, say) on the same databases
        router = make_router(shadow_read_percent=50, shadow_seed="pin", shadow_recheck_delay=0)
        if attempt == 0:
            seed(router)
        with router.session("k") as session:
            for n in range(60):
                session.execute(
                    select(text("id")).select_from(text("items")).where(text(f"id > {n}"))
                )
        assert router.shadow_flush(30)
        counts.append(router.shadow_report().compared)
        router.dispose()
    assert counts[0] == counts[1]
    assert 10 < counts[0] < 50


def test_shadow_off_by_default(router):
    with router.session("k") as session:
        session.execute(text("select 1"))
    assert router.shadow_report().enabled is False
    assert router.shadow_flush(1)
    with pytest.raises(ShadowReadsDisabledError, match="DBROUTE_SHADOW_READ_PERCENT"):
        router.shadow  # noqa: B018


def on_rds_differs(router):
    with router.engine(Target.RDS).begin() as conn:
        conn.execute(text("update items set name = 'different' where id = 5"))


def test_orm_flush_marks_the_transaction_written(shadow_router):
    from .test_shadow_reads import Item

    router = shadow_router()
    with router.session("k") as session:
        session.get(Item, 1)  # shadowed: session.get is a read like any other
        item = session.get(Item, 2)
        item.name = "renamed"
        session.scalars(select(Item).where(Item.id > 10)).all()  # autoflush first: skipped
        session.rollback()
        session.scalars(select(Item).where(Item.id > 10)).all()  # new transaction: shadowed
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"pending_writes": 1}
    assert report.compared == 3
    assert report.mismatched == 0


def test_row_cap(shadow_router):
    router = shadow_router(shadow_row_cap=10)
    with router.engine(Target.RDS).begin() as conn:
        conn.execute(text("insert into items (id, name, price) values (100, 'x', 1)"))
    with router.session("k") as session:
        assert len(session.execute(text("select id from items")).all()) == 20  # over the cap
        assert len(session.execute(text("select id from items where id > 12")).all()) == 8
    assert router.shadow_flush(30)
    report = router.shadow_report()
    assert report.skipped == {"row_cap": 1}
    # The shadow stops at cap + 1 rows: 9 rows on RDS are still a row-count difference.
    assert report.mismatched == 1


def test_mismatch_log_record_is_structured_and_has_no_values(shadow_router, caplog):
    router = shadow_router()
    on_rds_differs(router)
    with router.session("k") as session:
        session.execute(text("select id, name from items where name <> 'secret-literal'"))
    assert router.shadow_flush(30)
    (record,) = [r for r in caplog.records if r.name == "dbroute.shadow"]
    fields = record.dbroute_shadow
    assert fields["difference"] == "values"
    assert fields["statement"] == "select id, name from items where name <> ?"
    assert (fields["primary_rows"], fields["shadow_rows"]) == (20, 20)
    assert "secret-literal" not in record.getMessage()
    assert "different" not in record.getMessage()  # the planted value


def test_opentelemetry_counters_and_latency(shadow_router, metric_value):
    names = ["compared", "matched", "mismatched", "skipped", "dropped", "errors"]
    before = {n: metric_value(f"dbroute.shadow.{n}") for n in names}
    latency = {
        side: metric_value("dbroute.shadow.duration", **{"dbroute.shadow.side": side})
        for side in ("primary", "shadow")
    }
    router = shadow_router()
    on_rds_differs(router)
    with router.session("k") as session:
        session.execute(text("select id from items"))
        session.execute(text("select id, name from items"))
        session.execute(text("select id from items for share"))
    assert router.shadow_flush(30)
    delta = {n: metric_value(f"dbroute.shadow.{n}") - before[n] for n in names}
    assert delta == {
        "compared": 2,
        "matched": 1,
        "mismatched": 1,
        "skipped": 1,
        "dropped": 0,
        "errors": 0,
    }
    mismatched_on_rds = {"dbroute.target": "rds", "dbroute.shadow.reason": "values"}
    assert metric_value("dbroute.shadow.mismatched", **mismatched_on_rds) >= 1
    for side, count in latency.items():
        assert metric_value("dbroute.shadow.duration", **{"dbroute.shadow.side": side}) == count + 2
