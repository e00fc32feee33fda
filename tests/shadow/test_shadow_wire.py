"""What crosses to the worker process: portable parameters, and nothing that imports the app."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from dbroute.shadow.job import NotPortable, snapshot
from dbroute.shadow.wire import frame, load


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

    # Not even hidden inside a value snapshot() lets through.
    hidden = dt.datetime(2024, 1, 1, tzinfo=AppZone())
    assert snapshot(hidden) is hidden
    with pytest.raises(pickle.UnpicklingError, match="AppZone is not allowed"):
        load(pickle.dumps(hidden))


def test_frames_carry_the_job_id_outside_the_pickle():
    data = frame(("job",), job_id=42)
    assert int.from_bytes(data[4:12], "little") == 42
    assert load(data[12:]) == ("job",)
    assert uuid.UUID(int=5) == load(pickle.dumps(uuid.UUID(int=5)))
