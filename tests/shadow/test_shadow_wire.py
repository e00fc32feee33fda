"""What crosses to the worker process: portable parameters, and nothing that imports the app."""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from dbroute.shadow.job import NotPortable, snapshot
from dbroute.shadow.statement import analyse
from dbroute.shadow.wire import MATCH, MATCHES, OUTCOME, frame, gather, load


class AppValue:
    """Stands for an application's own class (importing its module runs the app's code)."""


class AppZone(dt.tzinfo):
    """An application's time zone class: a datetime with it passes snapshot() by its type."""

    def utcoffset(self, _when):
        return dt.timedelta(hours=1)

    def dst(self, _when):
        return dt.timedelta(0)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, ZoneInfo("Europe/Paris")])),
    st.times(),
    st.timedeltas(),
    st.uuids(),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_portable_values_cross_unchanged(value):
    """Property: whatever ``snapshot`` accepts, it copies equal and the worker reads back equal."""
    copied = snapshot(value)
    assert copied == value
    assert load(pickle.dumps(copied, protocol=pickle.HIGHEST_PROTOCOL)) == value


def test_a_snapshot_keeps_the_values_the_primary_saw():
    bound = {"ids": [1, 2], "doc": Jsonb({"tags": ["a"]})}
    copied = snapshot(bound)
    bound["ids"].append(3)  # the application reuses its objects once the query ran
    bound["doc"].obj["tags"].append("b")
    assert copied["ids"] == [1, 2]
    assert copied["doc"].obj == {"tags": ["a"]}


def test_json_wrappers_cross_with_their_object():
    wrapped = snapshot(Jsonb({"a": [1, Decimal("2.5")]}))
    assert load(pickle.dumps(wrapped)).obj == {"a": [1, Decimal("2.5")]}
    with pytest.raises(NotPortable):
        snapshot(Jsonb({"a": 1}, dumps=lambda obj: "{}"))  # a function of the app


@pytest.mark.parametrize(
    "value",
    [
        AppValue(),
        [1, AppValue()],
        {"k": AppValue()},
        {1: "non-text key"},
        {"s"},
        type("S", (str,), {})("x"),
    ],
)
def test_anything_else_is_not_portable(value):
    with pytest.raises(NotPortable):
        snapshot(value)


def test_the_worker_refuses_application_classes():
    with pytest.raises(pickle.UnpicklingError, match="AppValue is not allowed"):
        load(pickle.dumps(AppValue()))

    # Nor hidden inside a value of a portable type: snapshot() refuses it first.
    hidden = dt.datetime(2024, 1, 1, tzinfo=AppZone())
    with pytest.raises(NotPortable):
        snapshot(hidden)
    with pytest.raises(NotPortable):
        snapshot(dt.time(1, tzinfo=AppZone()))
    with pytest.raises(pickle.UnpicklingError, match="AppZone is not allowed"):
        load(pickle.dumps(hidden))


def test_frames_carry_the_job_id_outside_the_pickle():
    data = frame(("job",), job_id=42)
    assert int.from_bytes(data[4:12], "little") == 42
    assert load(data[12:]) == ("job",)
    assert uuid.UUID(int=5) == load(pickle.dumps(uuid.UUID(int=5)))


def _info(sql):
    return analyse(sql)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just(MATCH), st.sampled_from(["select 1", "select 2"]), st.booleans()),
            st.tuples(st.just(OUTCOME), st.none(), st.none()),
        ),
        max_size=30,
    )
)
def test_gathered_matches_keep_every_job_once_with_its_own_timings(results):
    batch = []
    for job_id, (tag, sql, on_neon) in enumerate(results):
        if tag == MATCH:
            target = "neon" if on_neon else "rds"
            batch.append((MATCH, job_id, _info(sql), target, job_id / 10, job_id / 100))
        else:
            batch.append((OUTCOME, job_id, "outcome"))
    gathered = gather(batch)
    unfolded = []  # the batch again, in the order the application reads it
    for result in gathered:
        if result[0] == MATCHES:
            _, info, target, ids, primary, shadow = result
            assert len(ids) == len(primary) == len(shadow)
            for job_id, p, s in zip(ids, primary, shadow, strict=True):
                unfolded.append((MATCH, job_id, info, target, p, s))
        else:
            unfolded.append(result)
    assert sorted(unfolded, key=lambda r: r[1]) == batch  # every job once, its own timings
    position = {result[1]: n for n, result in enumerate(unfolded)}
    for result in batch:
        if result[0] != MATCH:  # other results stay between the same matches
            assert all(position[r[1]] < position[result[1]] for r in batch[: result[1]])
            assert all(position[r[1]] > position[result[1]] for r in batch[result[1] + 1 :])
    for a, b in itertools.combinations([r for r in batch if r[0] == MATCH], 2):
        if (a[2], a[3]) == (b[2], b[3]):  # one statement's matches in order
            assert position[a[1]] < position[b[1]]
    outcomes = sum(r[0] == OUTCOME for r in batch)
    # Between two outcomes, at most one group per statement and target (2 x 2 here).
    assert len(gathered) <= outcomes + 4 * (outcomes + 1)
