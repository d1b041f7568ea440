"""The baseline is frozen at training time and stored with the registered version."""

from __future__ import annotations

import pytest

from bqx.config import Settings
from bqx.monitoring.baseline import (
    BaselineMissingError,
    load_baseline,
    parse_baseline,
    save_baseline,
)
from bqx.monitoring.drift import drift_report
from bqx.registry import Registry
from bqx.training.train import train_frame


def test_baseline_registered_with_version(signal_frame, tmp_path) -> None:
    s = Settings(home=tmp_path)
    small = signal_frame.iloc[-20000:]
    res = train_frame("EURUSD", small, s, model="ridge", n_jobs=1, selection_rows=4000)
    b = res.extra["baseline"]
    feats = res.artifact.features
    assert set(b["columns"]) == {*feats, "prediction", "target"}
    assert len(b["columns"][feats[0]]["edges"]) <= 9
    reg = Registry(s)
    v = reg.log_and_register(res)
    got = load_baseline(reg, "EURUSD", v)
    assert got == b
    # a window of the training segment itself is not drifted against its own baseline
    base = parse_baseline(got)
    rep = drift_report(base, {f: small[f].to_numpy()[2000:3440] for f in feats})
    assert rep["over_critical"] == 0 and len(rep["columns"]) == len(feats)
    # a version without a baseline: a clear message naming the command
    res.extra.clear()
    v2 = reg.log_and_register(res)
    with pytest.raises(BaselineMissingError) as e:
        load_baseline(reg, "EURUSD", v2)
    assert f"bqx monitor baseline EURUSD {v2}" in (e.value.hint or "")
    save_baseline(reg, "EURUSD", v2, b)
    assert load_baseline(reg, "EURUSD", v2)["rows"] == b["rows"]
