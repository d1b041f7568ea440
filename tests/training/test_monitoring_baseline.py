"""Training stores a frozen monitoring baseline with the version (bqx.monitoring.baseline)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bqx.config import Settings
from bqx.monitoring.baseline import (
    PREDICTION,
    TARGET,
    BaselineMissingError,
    baseline_status,
    column_baseline,
    load_baseline,
)
from bqx.registry import Registry
from bqx.training.train import train_frame


def test_column_baseline_deciles_and_missing():
    x = np.r_[np.arange(1000, dtype=float), [np.nan] * 250]
    b = column_baseline(x)
    assert len(b["edges"]) == 9 and b["missing_rate"] == pytest.approx(0.2)
    np.testing.assert_allclose(b["shares"], 0.1)
    assert b["min"] == 0 and b["max"] == 999
    # a binary feature gets 2 bins, not 10 empty ones
    assert len(column_baseline(np.r_[np.zeros(50), np.ones(50)])["shares"]) == 2


def test_baseline_stored_with_version(signal_frame, tmp_path):
    s = Settings(home=tmp_path)
    s.train.approval_rule = "never"
    r = train_frame("EURUSD", signal_frame.iloc[-12000:], s, model="ridge", selection_rows=3000)
    doc = r.extra["baseline"]
    assert set(doc["columns"]) == {*r.artifact.features, PREDICTION, TARGET}
    for c in doc["columns"].values():
        assert abs(sum(c["shares"]) - 1) < 1e-9
    reg = Registry(s)
    v = reg.log_and_register(r)
    got = load_baseline(reg, "EURUSD", v)
    assert got["columns"] == doc["columns"]
    # a version trained before baselines existed: a clear message naming the command
    old = dataclasses.replace(r, extra={})
    v2 = reg.log_and_register(old)
    with pytest.raises(BaselineMissingError, match=f"bqx monitor baseline EURUSD {v2}"):
        load_baseline(reg, "EURUSD", v2)
    assert baseline_status(reg, "EURUSD", v)["present"]
    assert "bqx monitor baseline" in baseline_status(reg, "EURUSD", v2)["text"]
