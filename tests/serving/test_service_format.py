"""The request path's shortcuts give what they replace: decision ids are uuid4 text,
``_iso``/``_pydatetime`` equal pandas' ``isoformat``/``to_pydatetime``, and
``parse_timestamp`` remembers only what cannot change its answer."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from bqx.serving import service as S
from bqx.state.decisions import new_decision_id


def test_decision_ids_are_uuid4_text():
    ids = {new_decision_id() for _ in range(5000)}
    assert len(ids) == 5000
    for s in list(ids)[:2000]:
        u = uuid.UUID(s)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == s


def test_iso_and_pydatetime_equal_pandas():
    rng = np.random.default_rng(5)
    vals = [int(v) for v in rng.integers(pd.Timestamp.min.value, pd.Timestamp.max.value, 3000)]
    vals += [v - v % 1000 for v in vals] + [v - v % 10**9 for v in vals] + [0, -1000, 1000]
    stamps = [pd.Timestamp(v, tz="UTC") for v in vals]
    stamps += [pd.Timestamp("2024-01-05T13:40:00+01:00"), pd.Timestamp("2024-01-05T13:40")]
    stamps += [pd.Timestamp(datetime(2024, 1, 5, 13, 40, 7, 123, tzinfo=UTC))]  # unit "us"
    stamps += [pd.Timestamp("2024-01-05T13:40:00Z").as_unit("s")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # to_pydatetime warns when it drops nanoseconds
        for t in stamps:
            assert S._iso(t) == t.isoformat(), t
            a, b = S._pydatetime(t), t.to_pydatetime()
            assert a == b and a.tzinfo == b.tzinfo and a.isoformat() == b.isoformat(), t


def test_parse_timestamp_remembers_only_equal_values():
    a = datetime(2024, 1, 5, 13, 40, tzinfo=UTC)
    b = datetime(2024, 1, 5, 14, 40, tzinfo=timezone(timedelta(hours=1)))  # the same instant
    ta, tb = S.parse_timestamp(a), S.parse_timestamp(b)
    assert ta == tb == pd.Timestamp("2024-01-05T13:40Z") and ta.isoformat() == tb.isoformat()
    naive = datetime(2024, 1, 5, 13, 41)
    assert S.parse_timestamp(naive) == pd.Timestamp("2024-01-05T13:41Z")
    assert S.parse_timestamp("2024-01-05T13:42:00Z") == pd.Timestamp("2024-01-05T13:42Z")
    assert S.parse_timestamp("2024-01-05T13:42:00Z") == pd.Timestamp("2024-01-05T13:42Z")
    assert S.parse_timestamp("2024-01-05T15:42:00+02:00") == pd.Timestamp("2024-01-05T13:42Z")
    assert S.parse_timestamp("  ") is None and S.parse_timestamp(None) is None
    for _ in range(2):  # an error is never remembered as an answer
        with pytest.raises(S.InvalidInputError):
            S.parse_timestamp("not a time")
    t = pd.Timestamp("2024-01-05T13:43Z")
    assert S.parse_timestamp(t) == t and S.parse_timestamp(t).unit == t.unit
