"""Pass summaries (monitor_runs), ``bqx monitor status`` and the gauges read from them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore
from bqx.features.pipeline import target_series
from bqx.monitoring.drift import build_baseline, drift_report
from bqx.monitoring.gauges import MonitoringGauges, histogram_quantile, traffic_series
from bqx.monitoring.run import run_pass, summarize
from bqx.state import StateDB


def _home_with_a_pass(tmp_path: Path) -> tuple[StateDB, dict]:
    bars = generate(days=2, pairs=["EURUSD"], seed=7).bars
    store = DuckDBStore(str(tmp_path / "bars.duckdb"), timedelta(minutes=1))
    store.upsert(bars)
    y = target_series(bars, "EURUSD", horizon=60)
    ts = y.index[200::5]
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
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
    state.raise_alert("drift", "KL 0.4", severity="critical", pair="USDJPY")
    rep = run_pass(state, store, now=ts[-1], notifiers=[])
    store.close()
    return state, rep


def test_pass_summary_is_stored_and_shown(tmp_path: Path, monkeypatch) -> None:
    from bqx.cli import app

    monkeypatch.setenv("BQX_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["monitor", "status"])
    assert res.exit_code == 0 and "no monitoring pass yet" in res.output, res.output
    state, rep = _home_with_a_pass(tmp_path)
    run = state.latest_monitor_run()
    assert run is not None and run["id"] == rep["run_id"] and run["errors"] == 0
    q = run["summary"]["quality"]
    assert {(r["pair"], r["window"]) for r in q} == {("EURUSD", "1d"), ("EURUSD", "7d")}
    assert q[0]["r2"]["se"] > 0 and q[0]["da"]["n_eff"] > 0  # uncertainty kept
    res = CliRunner().invoke(app, ["monitor", "status", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["run"]["id"] == rep["run_id"] and st["open_alerts"]["critical"] == 1
    assert st["run"]["quality"][0]["verdict"] in ("ok", "inconclusive", "-", "DROP (significant)")
    res = CliRunner().invoke(app, ["monitor", "status", "--pair", "eurusd", "--json"])
    st = json.loads(res.output)
    assert st["pair"] == "EURUSD" and st["alerts"] == []  # the USDJPY alert is filtered out
    res = CliRunner().invoke(app, ["monitor", "status", "--pair", "XXXYYY"])
    assert res.exit_code != 0 and "XXXYYY" in res.output
    res = CliRunner().invoke(app, ["monitor", "status"])
    assert "Live quality" in res.output and "drift" in res.output  # tables
    # the service's gauges read the same row (no recomputation)
    g = MonitoringGauges(state)
    g.refresh()
    body = "\n".join(
        f"{s.name}{sorted(s.labels.items())} {s.value}" for f in g.collect() for s in f.samples
    )
    assert "bqx_live_r2[('pair', 'EURUSD'), ('version', '1'), ('window', '1d')]" in body
    assert "bqx_alerts_open[('severity', 'critical')] 1" in body
    # old summaries are purged
    assert state.purge_monitor_runs(pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)) == 1
    assert state.latest_monitor_run() is None


def test_summary_keeps_each_pairs_worst_features() -> None:
    rng = np.random.default_rng(1)
    base = build_baseline({f"f{i}": rng.normal(size=5000) for i in range(8)})
    calm = {f"f{i}": rng.normal(size=1500) for i in range(8)}
    shifted = {**calm, "f3": rng.normal(3.0, 1.0, size=1500), "f5": rng.normal(1.0, 1, 1500)}
    reps = [
        {**drift_report(base, calm), "pair": "EURUSD", "model_version": "1", "n": 1500},
        {**drift_report(base, shifted), "pair": "USDJPY", "model_version": "2", "n": 1500},
        {**drift_report(base, calm), "pair": "USDJPY", "model_version": "3", "n": 1500},
    ]
    s = summarize({"drift": {"pairs": reps, "no_baseline": []}}, pd.Timestamp("2024-01-05"))
    assert set(s["drift"]) == {"EURUSD", "USDJPY"}
    j = s["drift"]["USDJPY"]
    assert j["model_version"] == "2" and j["severity"] == "critical"  # the worse version
    assert [w["name"] for w in j["worst"][:2]] == ["f3", "f5"] and len(j["worst"]) == 5
    assert j["over_critical"] >= 1 and s["drift"]["EURUSD"]["over_critical"] == 0


def test_traffic_series_and_quantiles() -> None:
    # Prometheus histogram_quantile: 100 observations, 50 <= 10 ms, 90 <= 20 ms, 100 <= 50 ms
    b = [(0.01, 50.0), (0.02, 90.0), (0.05, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, b) == 0.01
    assert abs(histogram_quantile(0.95, b) - 0.035) < 1e-12  # type: ignore[operator]
    assert histogram_quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None
    from bqx.serving.metrics import LATENCY_BUCKETS

    k = len(LATENCY_BUCKETS) + 1
    s0 = {"t": 0.0, "invocations": 0.0, "requests": 0.0, "errors": 0.0, "buckets": [0.0] * k}
    s1 = {"t": 30.0, "invocations": 60.0, "requests": 100.0, "errors": 5.0, "buckets": [60.0] * k}
    pts = traffic_series([s0, s1])
    assert pts == [
        {"t": 30.0, "per_min": 120.0, "error_rate": 0.05, "p50": 0.0005, "p95": 0.00095,
         "p99": 0.00099}
    ]  # fmt: skip


def test_ack_stops_repeats_until_escalation(tmp_path: Path, monkeypatch) -> None:
    from bqx.cli import app
    from bqx.monitoring.alerts import AlertManager, Condition
    from bqx.monitoring.notifiers import AlertEvent

    class Collect:
        name = "log"

        def __init__(self) -> None:
            self.got: list[AlertEvent] = []

        def send(self, event: AlertEvent) -> None:
            self.got.append(event)

    monkeypatch.setenv("BQX_HOME", str(tmp_path))
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    n = Collect()
    am = AlertManager(state, [n])
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    drift = Condition("drift", True, "KL 0.15", "warning", "EURUSD")
    lat = Condition("latency_p99", True, "p99 800 ms", "warning")
    am.evaluate([drift, lat], at=t0)
    assert len(n.got) == 2
    res = CliRunner().invoke(app, ["alerts", "ack", "drift:EURUSD", "--reason", "on it"])
    assert res.exit_code == 0, res.output
    rows = {a["rule"]: a for a in MonitoringGauges(state)._read_state()["alerts"]}
    assert rows["drift"]["acked_by"] and rows["drift"]["ack_note"] == "on it"
    res = CliRunner().invoke(app, ["alerts", "ack", "nope:*"])
    assert res.exit_code != 0 and "bqx alerts list" in res.output
    am.evaluate([drift, lat], at=t0 + pd.Timedelta(hours=5))  # past the 4 h repeat interval
    assert [e.rule for e in n.got[2:]] == ["latency_p99"]  # only the unacknowledged repeats
    crit = Condition("drift", True, "KL 0.4", "critical", "EURUSD")
    am.evaluate([crit, lat], at=t0 + pd.Timedelta(hours=5, minutes=5))
    assert [(e.rule, e.severity) for e in n.got[3:]] == [("drift", "critical")]  # escalation
    am.evaluate([Condition("drift", False, pair="EURUSD"), lat], at=t0 + pd.Timedelta(hours=6))
    assert [(e.kind, e.rule) for e in n.got[4:]] == [("resolved", "drift")]
    rows = {a["rule"]: a for a in MonitoringGauges(state)._read_state()["alerts"]}
    assert rows["latency_p99"]["acked_by"] is None and "drift" not in rows


_MP_RENDER = """
from bqx.monitoring.gauges import MonitoringGauges
from bqx.serving.metrics import create_metrics, render_latest
from bqx.state import StateDB
import sys
m = create_metrics()
assert m.multiprocess
m.observe_request("/v1/predict", "POST", 200, 0.004)
g = MonitoringGauges(StateDB(sys.argv[1]), m)
g.refresh()
m.add_collector(g)
print(render_latest(m)[0].decode())
"""


def test_gauges_render_in_multiprocess_mode(tmp_path: Path) -> None:
    """With --workers N the scrape aggregates the workers' files; the monitoring gauges
    (not file-backed) are rendered beside them, once."""
    import os
    import subprocess
    import sys

    from bqx.serving.metrics import prepare_multiprocess_dir

    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    est = {"value": 0.01, "lo": -0.05, "hi": 0.07, "se": 0.03, "n": 900, "n_eff": 40.0}
    q = {"pair": "EURUSD", "model_version": "1", "window": "1d", "n": 900, "r2": est}
    state.record_monitor_run({"quality": [q], "drift": {}}, as_of="2024-01-05", seconds=0.1)
    state.raise_alert("drift", "KL 0.4", severity="critical", pair="USDJPY")
    d = prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(d)}
    out = subprocess.run(
        [sys.executable, "-c", _MP_RENDER, f"sqlite:///{tmp_path / 'state.db'}"],
        env=env, check=True, timeout=60, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert out.count('bqx_live_r2{pair="EURUSD",version="1",window="1d"}') == 1
    assert 'bqx_alerts_open{severity="critical"} 1.0' in out
    assert "bqx_http_request_duration_seconds_bucket" in out


def test_gauges_keep_the_last_snapshot_when_the_state_db_is_down(tmp_path: Path) -> None:
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    state.raise_alert("drift", "KL 0.4", severity="critical", pair="USDJPY")
    g = MonitoringGauges(state)
    g.refresh()
    assert g.snapshot["open_alerts"]["critical"] == 1 and g.refresh_failures == 0
    g.state = StateDB("postgresql://postgres@127.0.0.1:1/nothing", tolerate_unreachable=True)
    g.refresh()  # refused connection: counted, last snapshot kept
    assert g.refresh_failures == 1 and g.last_error
    assert g.snapshot["open_alerts"]["critical"] == 1
    fams = {f.name: f for f in g.collect()}
    assert fams["bqx_monitoring_gauges_refresh_failures"].samples[0].value == 1
    assert fams["bqx_alerts_open"].samples[0].value == 1
    never = MonitoringGauges(g.state)
    never.refresh()
    age = {f.name: f for f in never.collect()}["bqx_monitoring_gauges_age_seconds"]
    assert age.samples[0].value >= 0  # a number (the stale rule can fire), not NaN
