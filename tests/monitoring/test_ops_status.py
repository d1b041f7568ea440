"""Operational rules from the service's own request statistics (issue 12 item 6), training
and monitoring failures as alerts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bqx.config import MonitorSettings, Settings
from bqx.infra.pgtemp import free_port
from bqx.monitoring.opsrules import bucket_quantile, route_stats, training_alerts
from bqx.monitoring.run import run_pass
from bqx.serving.metrics import LATENCY_BUCKETS
from bqx.serving.opstats import RequestStats
from bqx.state import StateDB, open_state


def _open(state: StateDB) -> dict[str, dict]:
    al = state.read_alerts(open_only=True)
    return {str(r.fingerprint): r._asdict() for r in al.itertuples(index=False)}


def test_5xx_from_real_requests_fires_critical_then_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that is down makes the API answer 503 on /v1/models: the service's own
    statistics (flushed to the state DB) fire a critical http_5xx_rate alert for that
    route only; it resolves once the window holds no failing traffic."""
    from bqx.serving.app import create_app
    from bqx.serving.auth import ApiKeys

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    s = Settings(home=tmp_path / "h")
    s.ensure_home()
    s.tracking_uri = f"http://127.0.0.1:{free_port()}"  # nothing listens: registry down
    key = ApiKeys(open_state(s)).create_key("reader")[1]
    # the server's own 503 handling, not the test client re-raising the cause
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        codes = [c.get("/v1/models", headers={"X-API-Key": key}).status_code for _ in range(25)]
        codes += [c.get("/healthz").status_code for _ in range(25)]
    assert codes.count(503) == 25 and codes.count(200) == 25
    state = open_state(s)  # the app flushed its statistics on shutdown
    rows = state.read_service_stats(pd.Timestamp.now(tz="UTC") - timedelta(minutes=5))
    assert {r["route"] for r in rows} >= {"/v1/models", "/healthz"}
    rep = run_pass(state, monitor=s.monitor, notifiers=[])
    assert rep["errors"] == []
    assert rep["ops"]["errors"]["/v1/models"]["error_rate"] == 1.0
    al = _open(state)
    assert al["http_5xx_rate:/v1/models"]["severity"] == "critical"
    assert "http_5xx_rate:/healthz" not in al
    later = pd.Timestamp.now(tz="UTC") + timedelta(minutes=s.monitor.error_window_min + 1)
    rep = run_pass(state, monitor=s.monitor, notifiers=[], ops_now=later)
    assert "http_5xx_rate:/v1/models" in rep["alerts"]["resolved"]
    assert "http_5xx_rate:/v1/models" not in _open(state)


def test_p99_rule_sums_histograms_across_replicas(tmp_path: Path) -> None:
    """Two replicas with 15 requests each: neither alone reaches ops_min_requests (20),
    together they do, and their summed p99 (> 500 ms) raises the latency warning."""
    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    for inst in ("replica-a", "replica-b"):
        st = RequestStats(inst)
        for i in range(15):
            st.observe("/v1/predict", 200, 0.7 if i < 3 else 0.004)
        assert st.flush(state) == 1
    cfg = MonitorSettings()
    rep = run_pass(state, monitor=cfg, notifiers=[])
    lat = rep["ops"]["latency"]["/v1/predict"]
    assert lat["requests"] == 30 and lat["instances"] == 2 and lat["p99_ms"] > 500
    assert _open(state)["http_latency_p99:/v1/predict"]["severity"] == "warning"
    cfg.p99_warning_ms = 2000  # configurable: the same traffic is fine at 2 s
    rep = run_pass(state, monitor=cfg, notifiers=[])
    assert "http_latency_p99:/v1/predict" in rep["alerts"]["resolved"]


def test_bucket_quantile_matches_prometheus_interpolation() -> None:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[4] = 90  # (7.5 ms, 10 ms]
    counts[12] = 10  # (200 ms, 500 ms]
    assert bucket_quantile(0.5, counts, LATENCY_BUCKETS) == pytest.approx(0.0075 + 0.0025 * 50 / 90)
    assert bucket_quantile(0.99, counts, LATENCY_BUCKETS) == pytest.approx(0.2 + 0.3 * 9 / 10)
    counts[-1] = 1000  # beyond the last bucket: its bound (1 s), as histogram_quantile
    assert bucket_quantile(0.99, counts, LATENCY_BUCKETS) == 1.0
    assert np.isnan(bucket_quantile(0.5, [0] * len(counts), LATENCY_BUCKETS))
    rows = [{"route": "/x", "requests": 2, "errors_5xx": 1, "seconds_sum": 0.02,
             "buckets": counts, "instance": "a"}]  # fmt: skip
    assert route_stats(rows)["/x"]["error_rate"] == 0.5


def test_flush_failure_keeps_counts_for_the_next_flush(tmp_path: Path) -> None:
    st = RequestStats("r")
    for _ in range(5):
        st.observe("/v1/predict", 500, 0.01)
    broken = StateDB(f"sqlite:///{tmp_path / 'x.db'}")
    broken.drop_all()  # the table is gone: the write fails
    broken._tables_pending = False
    assert st.flush(broken) == 0 and st.flush_errors == 1
    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    assert st.flush(state) == 1
    (row,) = state.read_service_stats("2000-01-01")
    assert row["requests"] == 5 and row["errors_5xx"] == 5


def test_training_and_monitoring_failures_are_critical_alerts(tmp_path: Path) -> None:
    from bqx.monitoring import run_once

    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    training_alerts(
        state, [("EURUSD", False, "ValueError: too few rows\ntrace"), ("GBPUSD", True, None)]
    )
    al = _open(state)
    assert al["training_failed:EURUSD"]["severity"] == "critical"
    assert "too few rows" in al["training_failed:EURUSD"]["message"]
    training_alerts(state, [("EURUSD", True, None)])  # the next good training resolves it
    assert "training_failed:EURUSD" not in _open(state)
    s = Settings(home=tmp_path / "h")
    s.ensure_home()
    (tmp_path / "afile").write_text("x")
    s.store_url = f"duckdb:///{tmp_path / 'afile'}/bars.duckdb"  # cannot be opened
    with pytest.raises(FileExistsError):
        run_once(s)
    al = _open(open_state(s))
    assert al["monitoring_failure:*"]["severity"] == "critical"


class _Down:
    name = "webhook"

    def send(self, event: object) -> None:
        raise OSError("connection refused")


def test_notifiers_come_from_settings_and_webhook_is_hidden(tmp_path: Path) -> None:
    """``[monitor] webhook_url`` makes run_pass post to a real HTTP receiver; ``bqx config
    show`` does not print the webhook's secret path."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = Settings(home=tmp_path / "h")
        s.monitor.webhook_url = f"http://127.0.0.1:{srv.server_port}/T000/B000/secret"
        state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
        state.raise_alert("training_failed", "EURUSD: boom", severity="critical", pair="EURUSD")
        rep = run_pass(state, monitor=s.monitor)
        assert rep["alerts"]["sent"] >= 2  # the log and the webhook
        assert got and "CRITICAL" in got[0]["text"] and got[0]["alert"]["pair"] == "EURUSD"
        shown = s.public_dict()["monitor"]["webhook_url"]
        assert "secret" not in shown and shown.startswith("http://127.0.0.1/")
    finally:
        srv.shutdown()
