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
from bqx.monitoring.drift import MARKET_VOL, drift_report
from bqx.registry import Registry
from bqx.training.train import train_frame


def test_baseline_registered_with_version(signal_frame, tmp_path) -> None:
    s = Settings(home=tmp_path)
    small = signal_frame.iloc[-20000:]
    res = train_frame("EURUSD", small, s, model="ridge", n_jobs=1, selection_rows=4000)
    b = res.extra["baseline"]
    feats = res.artifact.features
    # the market column (realised volatility) is baselined beside the selected features
    assert set(b["columns"]) == {*feats, "prediction", "target", MARKET_VOL}
    assert b["columns"][MARKET_VOL]["level"]["1440"][1] > 0
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


def test_monitoring_pass_flags_drift_of_captured_inputs(signal_frame, tmp_path) -> None:
    """Captured inputs of the training segment are quiet; the same inputs shifted by 3 std
    raise a critical `drift` alert for the pair in one pass (the operator's trigger)."""
    import numpy as np
    import pandas as pd

    from bqx.monitoring.run import drift_pass
    from bqx.state import StateDB
    from bqx.state.captures import capture_row

    s = Settings(home=tmp_path)
    small = signal_frame.iloc[-20000:]
    res = train_frame("EURUSD", small, s, model="ridge", n_jobs=1, selection_rows=4000)
    reg = Registry(s)
    v = reg.log_and_register(res)
    feats = res.artifact.features
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    end = pd.Timestamp("2030-01-02", tz="UTC")
    X = small[feats].to_numpy(np.float64)[2000:3440]

    def write(shift: float, tag: str) -> None:
        sd = np.nanstd(X, axis=0)
        state.write_captures(
            capture_row(decision_id=f"{tag}{i}", pair="EURUSD",
                        asof_ts=end - pd.Timedelta(minutes=len(X) - i), model_version=str(v),
                        names=feats, values=X[i] + shift * sd,
                        captured_at=end - pd.Timedelta(minutes=len(X) - i))
            for i in range(len(X))
        )  # fmt: skip

    write(0.0, "a")
    rep, conds = drift_pass(state, reg, end)
    assert rep["pairs"][0]["over_critical"] == 0
    assert conds and not conds[0].firing
    state.purge_captures(end + pd.Timedelta(days=1))
    write(3.0, "b")
    rep, conds = drift_pass(state, reg, end)
    assert rep["pairs"][0]["severity"] == "critical"
    assert conds[0].firing and conds[0].severity == "critical" and conds[0].pair == "EURUSD"
