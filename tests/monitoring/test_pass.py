"""A monitoring pass over a real state DB and bar store: maturing is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore
from bqx.features.pipeline import target_series
from bqx.monitoring.run import run_pass
from bqx.state import StateDB


def test_pass_matures_once_and_reports_quality(tmp_path: Path) -> None:
    bars = generate(days=2, pairs=["EURUSD"], seed=7).bars
    from datetime import timedelta

    store = DuckDBStore(str(tmp_path / "bars.duckdb"), timedelta(minutes=1))
    store.upsert(bars)
    y = target_series(bars, "EURUSD", horizon=60)
    ts = y.index[200::5]
    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    rng = np.random.default_rng(0)
    state.log_decisions(
        {
            "pair": "EURUSD",
            "asof_ts": t,
            "horizon": 60,
            "prediction": float(rng.normal() * 1e-4),
            "model_version": "1",
            "request_time": t,
        }
        for t in ts
    )
    now = ts[-1]
    r1 = run_pass(state, store, now=now, notifiers=[])
    assert r1["errors"] == [] and r1["mature"]["matured"] > 0
    d1 = state.read_decisions()
    r2 = run_pass(state, store, now=now, notifiers=[])
    assert r2["mature"]["matured"] == 0  # idempotent: nothing new
    d2 = state.read_decisions()
    np.testing.assert_array_equal(
        d1["realized_target"].to_numpy(), d2["realized_target"].to_numpy()
    )
    exp = y.reindex(d1["asof_ts"]).to_numpy()
    got = d1["realized_target"].to_numpy()
    ok = np.isfinite(exp)
    np.testing.assert_array_equal(got[ok], exp[ok])  # the training target, bit for bit
    assert np.isnan(got[~ok]).all()
    rows = r1["quality"]["rows"]
    assert {r["model_version"] for r in rows} == {"1"} and rows[0]["metrics"]["r2"]["n_eff"]


def test_empty_log_gives_an_empty_report(tmp_path: Path, monkeypatch) -> None:
    from bqx.cli import app

    monkeypatch.setenv("BQX_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["monitor", "run", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["quality"]["rows"] == [] and rep["errors"] == []


def test_operator_runs_the_monitoring_pass(tmp_path):
    """The operator's monitoring task is bqx.monitoring.run_once, and a pass over an empty
    project is an empty, valid report (not an error)."""
    from bqx.config import Settings
    from bqx.monitoring import run_once
    from bqx.ops.operator import _monitoring_hook

    assert _monitoring_hook() is run_once
    s = Settings(home=tmp_path / "home")
    s.ensure_home()
    rep = run_once(s)
    assert rep["quality"]["rows"] == [] and not rep.get("errors")
