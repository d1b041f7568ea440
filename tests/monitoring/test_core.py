"""Monitoring core: drift, maturing, live quality, alerts and real notifier servers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from bqx.data.simulator import generate
from bqx.features.pipeline import target_series
from bqx.monitoring import (
    AlertManager,
    Condition,
    SmtpNotifier,
    WebhookNotifier,
    build_baseline,
    drift_report,
    mature_frame,
    quality_report,
)
from bqx.state import StateDB


def _ar1(n: int, rng: np.random.Generator, phi: float = 0.98, scale: float = 1.0) -> np.ndarray:
    """A strongly autocorrelated, heavy-tailed feature (like a 60-bar rolling stat)."""
    e = rng.standard_t(4, n) * scale
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def _rolling_vol(n: int, rng: np.random.Generator, vol: float = 1.0) -> np.ndarray:
    r = rng.standard_t(4, n + 59) * vol
    return pd.Series(r).rolling(60).std().to_numpy()[59:]


def test_stationary_is_quiet_and_injected_drift_is_critical() -> None:
    rng = np.random.default_rng(1)
    base = build_baseline({"f": _ar1(20 * 1440, rng, 0.9), "v": _rolling_vol(20 * 1440, rng)})
    reps = [
        drift_report(base, {"f": _ar1(1440, rng, 0.9), "v": _rolling_vol(1440, rng)})
        for _ in range(60)
    ]
    cols = [c for r in reps for c in r["columns"]]
    far = np.mean([c["severity"] != "ok" for c in cols])
    assert far <= 0.01, far  # warning rate per feature-day on stationary data
    # KS rejects on many autocorrelated stationary windows: reported, never the severity
    b98 = build_baseline({"f": _ar1(20 * 1440, rng, 0.98)})
    ks_p = [
        drift_report(b98, {"f": _ar1(1440, rng, 0.98)})["columns"][0]["ks_p"] for _ in range(20)
    ]
    assert np.mean(np.array(ks_p) < 0.05) > 0.2
    # a volatility-regime change (x1.9, the simulator's turbulent state) and a level shift
    # reach critical in one daily window
    vol = drift_report(base, {"v": _rolling_vol(1440, rng, vol=1.9)})
    shift = drift_report(base, {"f": _ar1(1440, rng, 0.9) + 2 * base["f"].std})
    assert vol["severity"] == "critical" and shift["severity"] == "critical"


def test_maturing_matches_training_target_and_is_idempotent() -> None:
    bars = generate(days=3, pairs=["EURUSD"], seed=3).bars
    y = target_series(bars, "EURUSD", horizon=60)
    ts = y.index[::37]
    dec = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(len(ts))],
            "pair": "EURUSD",
            "asof_ts": ts,
            "horizon": 60,
        }
    )
    a = mature_frame(dec, bars)
    b = mature_frame(dec, bars)
    exp = y.reindex(ts).to_numpy()
    np.testing.assert_array_equal(a.to_numpy(), exp)  # bit for bit, NaN where unknown
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert np.isnan(a.iloc[-1])  # the last decisions' horizon runs past the data


def test_r2_drop_detected_when_signal_switches_off() -> None:
    rng = np.random.default_rng(5)
    n, h = 2 * 1440, 60
    sig = _ar1(n, rng, phi=0.995, scale=0.1)
    noise = np.convolve(rng.standard_normal(n + h), np.ones(h) / np.sqrt(h), "valid")[:n]
    y = sig + noise * sig.std() * 1.0
    pred = sig.copy()
    ts = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    test_r2 = 1 - np.var(y - pred) / np.var(y)

    def frame(p: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pair": "EURUSD",
                "model_version": "3",
                "asof_ts": ts,
                "horizon": h,
                "prediction": p,
                "realized_target": y,
                "interval_lo": np.nan,
                "interval_hi": np.nan,
            }
        )

    tm = {"3": {"r2": float(test_r2)}}
    ok = quality_report(frame(pred), test_metrics=tm)["rows"][0]
    assert ok["window"] == "1d" and not ok["r2_drop"]["alert"]
    assert ok["metrics"]["r2"]["n_eff"] < 0.5 * ok["n"]  # overlap shrinks the sample
    dead = quality_report(frame(rng.standard_normal(n) * sig.std()), test_metrics=tm)["rows"][0]
    assert dead["r2_drop"]["alert"] and dead["r2_drop"]["significant"]


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[dict]] = []
    fail: ClassVar[bool] = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).fail:
            self.send_response(503)
            self.end_headers()
            return
        type(self).got.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.got = []
    _Receiver.fail = False
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv, _Receiver
    srv.shutdown()


def test_alert_fires_once_escalates_resolves_and_survives_outage(tmp_path: Path, receiver) -> None:
    srv, rec = receiver
    state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    hook = WebhookNotifier(f"http://127.0.0.1:{srv.server_port}/hook")
    am = AlertManager(state, [hook], backoff_s=0.01, retries=1)
    warn = Condition("drift", True, "KL 0.15", "warning", "EURUSD")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    am.evaluate([warn], at=t0)
    am.evaluate([warn], at=t0 + pd.Timedelta(minutes=5))
    assert len(rec.got) == 1 and "WARNING" in rec.got[0]["text"]
    crit = Condition("drift", True, "KL 0.4", "critical", "EURUSD")
    am.evaluate([crit], at=t0 + pd.Timedelta(minutes=10))
    assert len(rec.got) == 2 and "CRITICAL" in rec.got[1]["text"]
    # outage: resolve happens while the receiver is down -> pending, delivered later
    rec.fail = True
    r = am.evaluate([Condition("drift", False, pair="EURUSD")], at=t0 + pd.Timedelta(minutes=15))
    assert r["resolved"] == ["drift:EURUSD"] and r["failed"] == 1
    new = Condition("latency_p99", True, "p99 800 ms", "warning")
    r = am.evaluate([new], at=t0 + pd.Timedelta(minutes=16))
    assert r["failed"] >= 1
    rec.fail = False
    r = am.evaluate([], at=t0 + pd.Timedelta(minutes=20))
    kinds = sorted(g["alert"]["kind"] + ":" + g["alert"]["rule"] for g in rec.got[2:])
    assert kinds == ["firing:latency_p99", "resolved:drift"]
    assert len(state.read_alerts(open_only=True)) == 1
    assert am.evaluate([], at=t0 + pd.Timedelta(minutes=25))["sent"] == 0


def test_smtp_notifier_reaches_a_real_server(tmp_path: Path) -> None:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")

    class Handler:
        def __init__(self) -> None:
            self.msgs: list[bytes] = []

        async def handle_DATA(self, server, session, envelope):
            self.msgs.append(envelope.content)
            return "250 OK"

    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    h = Handler()
    ctl = aiosmtpd.Controller(h, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        state = StateDB(f"sqlite:///{tmp_path / 's.db'}")
        smtp = SmtpNotifier("127.0.0.1", port, "bqx@localhost", ["desk@localhost"])
        AlertManager(state, [smtp]).evaluate([Condition("errors_5xx", True, "7 %", "critical")])
        assert len(h.msgs) == 1 and b"CRITICAL" in h.msgs[0]
    finally:
        ctl.stop()
