"""Walk-forward: retrain per window, predict the next month out of sample, trade it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from bqx.cli import app


@pytest.mark.slow
def test_walk_forward_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "3000")
    r = CliRunner()
    res = r.invoke(app, ["data", "generate", "--days", "100", "--pairs", "EURUSD", "--seed", "4",
                         "--signal-strength", "0.2", "--start", "2024-01-01", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "wf"
    args = ["backtest", "--pairs", "EURUSD", "--train-months", "1", "--test-months", "1",
            "--windows", "2", "--model", "ridge", "--jobs", "2", "--out", str(out), "--json"]  # fmt: skip
    res = r.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["walk_forward"]["windows"] == 2 and not summary["walk_forward"]["errors"]
    # each window's stage times are recorded (issue 15: where a walk-forward's minutes go)
    ws = summary["walk_forward"]["window_seconds"]
    assert sorted(ws) == ["EURUSD/0", "EURUSD/1"]
    for t in ws.values():
        assert {"read", "selection", "fit", "predict", "total"} <= set(t)
        assert 0 < t["fit"] < t["total"] and t["read"] + t["fit_and_calibrate"] <= t["total"]
    pred = pd.read_parquet(out / "predictions.parquet")
    assert sorted(pred["window"].unique()) == [0, 1]
    for _, g in pred.groupby("window"):
        # every test bar is after its training window plus the purge gap (61 one-minute bars)
        assert g["ts"].min() > g["train_end"].iloc[0] + pd.Timedelta(minutes=60)
        assert g["test_start"].iloc[0].month == g["ts"].min().month
    assert (out / "report.html").exists() and (out / "trades.csv").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert m["prediction"] is not None
    # a real signal was learned out of sample (oracle R² ~0.2); that strength is implausible
    # on real FX, so the leakage alarm must fire (directional accuracy above 0.6)
    assert 0.05 < m["prediction"]["all"]["r2"] < 0.3
    assert m["leakage"]["alarm"] is True
    flagged = {c["metric"] for c in m["leakage"]["checks"] if c["flagged"]}
    assert "directional_accuracy" in flagged
    # re-running with other exits reuses the cached predictions: no retraining
    res2 = r.invoke(
        app,
        [
            *args[:-3],
            "--reuse-predictions",
            "--take-profit",
            "0.02",
            "--out",
            str(tmp_path / "wf2"),
            "--json",
        ],
    )
    assert res2.exit_code == 0, res2.output
    s2 = json.loads(res2.stdout)
    assert s2["walk_forward"]["reused"] is True
