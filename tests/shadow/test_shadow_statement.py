"""Statement analysis, sampling and the bounded executor (pure units, no database)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbroute.shadow.executor import BoundedExecutor
from dbroute.shadow.sampling import Sampler
from dbroute.shadow.statement import StatementKind, analyse

K = StatementKind


@pytest.mark.parametrize(
    ("sql", "kind", "ordered"),
    [
        ("SELECT id FROM t WHERE id = %(id_1)s", K.READ, False),
        ("select id from t order by id", K.READ, True),
        ("select id, row_number() over (order by id) from t", K.READ, False),
        ("with a as (select 1) select * from a order by 1", K.READ, True),
        ("select * from t where name = 'for update'", K.READ, False),
        ('select "update", "into" from t', K.READ, False),
        ("select * from t for update", K.LOCKING, False),
        ("select * from t for no key update skip locked", K.LOCKING, False),
        ("select nextval('s')", K.WRITE, False),
        ("select pg_advisory_lock(1)", K.WRITE, False),
        ("with d as (delete from t returning *) select * from d", K.WRITE, False),
        ("select * into t2 from t", K.WRITE, False),
        ("insert into t values (1)", K.WRITE, False),
        ("set local statement_timeout = 5", K.WRITE, False),
        ("savepoint sa_savepoint_1", K.CONTROL, False),
        ("select now(), id from t", K.VOLATILE, False),
        ("select current_timestamp", K.VOLATILE, False),
        ("select ctid from t", K.VOLATILE, False),
        ("select * from t limit 5", K.NONDETERMINISTIC, False),
        ("select * from t order by id limit 5", K.READ, True),
        ("select distinct on (a) a, b from t", K.NONDETERMINISTIC, False),
        ("show search_path", K.OTHER, False),
    ],
)
def test_classification(sql, kind, ordered):
    info = analyse(sql)
    assert (info.kind, info.ordered) == (kind, ordered)


def test_fingerprint_has_no_literal_values():
    a = analyse("select * from users where email = 'alice@example.com' and age > 41 -- hi")
    b = analyse("SELECT *  FROM users WHERE email = 'bob@example.com' AND age > 7")
    assert a.fingerprint == b.fingerprint
    assert "alice" not in a.normalized
    assert "41" not in a.normalized
    c = analyse("select * from t where id in (%(id_1_1)s, %(id_1_2)s, %(id_1_3)s)")
    assert c.fingerprint == analyse("select * from t where id in (%(id_1_1)s)").fingerprint
    assert analyse("select a from t1").fingerprint != analyse("select a from t2").fingerprint


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_string_literals_never_reach_the_fingerprint(secret):
    quoted = secret.replace("'", "''")
    info = analyse(f"select id from t where name = '{quoted}'")
    assert info.normalized == "select id from t where name = ?"


@pytest.mark.parametrize("percent", [0, 100])
def test_sampler_extremes(percent):
    sampler = Sampler(Decimal(percent))
    assert all(sampler.sampled("select 1", {"n": n}) is bool(percent) for n in range(100))


@settings(max_examples=50, derandomize=True, deadline=None)
@given(st.text(max_size=20), st.integers())
def test_seeded_sampler_is_a_pure_function(seed, value):
    one, two = Sampler(Decimal("37.5"), seed), Sampler(Decimal("37.5"), seed)
    assert one.sampled("select %(v)s", {"v": value}) == two.sampled("select %(v)s", {"v": value})


def test_seeded_sampler_rate():
    sampler = Sampler(Decimal(25), "seed")
    hits = sum(sampler.sampled("select %(v)s", {"v": n}) for n in range(4000))
    assert 850 < hits < 1150


def test_executor_refuses_when_full_and_never_blocks():
    release, started = threading.Event(), threading.Event()
    executor = BoundedExecutor(workers=1, queue_size=2)

    def blocker():
        started.set()
        release.wait(10)

    assert executor.submit(blocker)
    assert started.wait(10)
    ran = [threading.Event(), threading.Event()]
    assert executor.submit(ran[0].set)
    assert executor.submit(ran[1].set)
    assert not executor.submit(lambda: None)  # full: refused at once
    assert not ran[0].is_set()  # queued behind the blocker
    release.set()
    assert all(event.wait(10) for event in ran)  # then run
    assert executor.stop() == 0
    assert executor.join(10)
    assert not executor.submit(lambda: None)  # closed


def test_executor_stop_discards_queued_jobs():
    release, started = threading.Event(), threading.Event()
    executor = BoundedExecutor(workers=1, queue_size=5)
    executor.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    ran = []
    for n in range(3):
        executor.submit(lambda n=n: ran.append(n))
    assert executor.stop() == 3
    release.set()
    assert executor.join(10)
    assert ran == []
