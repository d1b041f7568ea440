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


def test_a_target_across_a_gap_is_closed_as_unknowable_once_the_data_runs_past(
    tmp_path: Path,
) -> None:
    """Decisions whose horizon crosses a data gap get NaN, as in training; they stay pending
    while the data could still fill them, and are closed (not read again) once the pair's
    bars run EXPIRE past them - so one gap does not make every later pass re-read days of
    bars. Recent decisions whose horizon is simply not over yet keep waiting."""
    from datetime import timedelta

    import pandas as pd

    from bqx.monitoring.mature import EXPIRE, mature

    bars = generate(days=12, pairs=["EURUSD"], seed=3).bars
    ts = pd.DatetimeIndex(bars["ts"])
    gap_at = ts[3000]
    gapped = bars[(ts < gap_at) | (ts >= gap_at + pd.Timedelta(hours=3))]
    y = target_series(gapped, "EURUSD", horizon=60)
    before_gap = y.index[(y.index < gap_at) & (y.index >= gap_at - pd.Timedelta(minutes=30))]
    assert before_gap.size and np.isnan(y.reindex(before_gap).to_numpy()).all()
    recent = y.index[-10:]  # horizon not over: NaN now, must keep waiting
    assert np.isnan(y.reindex(recent).to_numpy()).all()
    fine = y.index[2000:2010]
    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    state.log_decisions(
        {"pair": "EURUSD", "asof_ts": t, "horizon": 60, "prediction": 1e-5,
         "model_version": "1", "request_time": t}
        for t in [*before_gap, *recent, *fine]
    )  # fmt: skip
    store = DuckDBStore(str(tmp_path / "bars.duckdb"), timedelta(minutes=1))
    # first only the data up to just after the gap: nothing is final yet
    store.upsert(gapped[pd.DatetimeIndex(gapped["ts"]) < gap_at + pd.Timedelta(days=1)])
    r0 = mature(state, store)
    assert r0.unknowable == 0 and r0.matured == len(fine)
    assert r0.waiting == {"EURUSD": len(before_gap) + len(recent)}
    # then the rest: the gap's decisions are EXPIRE behind the data, the recent ones are not
    assert pd.Timestamp(y.index[-1]) >= gap_at + EXPIRE
    store.upsert(gapped)
    r1 = mature(state, store)
    assert r1.pending == len(before_gap) + len(recent)
    assert r1.unknowable == len(before_gap) and r1.matured == 0
    assert r1.waiting == {"EURUSD": len(recent)}
    d = state.read_decisions().set_index("asof_ts")
    closed = d.loc[before_gap]
    assert closed["realized_target"].isna().all() and closed["realized_at"].notna().all()
    assert d.loc[recent, "realized_at"].isna().all()
    r2 = mature(state, store)  # idempotent: only the recent ones are read again
    assert r2.pending == len(recent) and r2.unknowable == 0 and r2.matured == 0
