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

from dbroute.shadow.job import portable
from dbroute.shadow.wire import frame, load


class AppValue:
    """Stands for an application's own class (importing its module runs the app's code)."""


class AppZone(dt.tzinfo):
    """An application's time zone class: a datetime with it passes portable() by its type."""

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
    """Property: whatever ``portable`` accepts, the worker reads back equal."""
    assert portable(value)
    assert load(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) == value


def test_json_wrappers_cross_with_their_object():
    wrapped = Jsonb({"a": [1, Decimal("2.5")]})
    assert portable(wrapped)
    assert load(pickle.dumps(wrapped)).obj == {"a": [1, Decimal("2.5")]}
    assert not portable(Jsonb({"a": 1}, dumps=lambda obj: "{}"))  # a function of the app


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
    assert not portable(value)


def test_the_worker_refuses_application_classes():
    with pytest.raises(pickle.UnpicklingError, match="AppValue is not allowed"):
        load(pickle.dumps(AppValue()))

    # Not even hidden inside a value portable() lets through.
    hidden = dt.datetime(2024, 1, 1, tzinfo=AppZone())
    assert portable(hidden)
    with pytest.raises(pickle.UnpicklingError, match="AppZone is not allowed"):
        load(pickle.dumps(hidden))


def test_frames_carry_the_job_id_outside_the_pickle():
    data = frame(("job",), job_id=42)
    assert int.from_bytes(data[4:12], "little") == 42
    assert load(data[12:]) == ("job",)
    assert uuid.UUID(int=5) == load(pickle.dumps(uuid.UUID(int=5)))
