"""Monitoring surfaces of the service (issue 12 items 8-9): Prometheus gauges refreshed from
the state DB, deploy/ files that use only exported metric names, and /dashboard rendered in
a real headless Chromium against a live uvicorn server.

One live server per module (a copy of the session's trained home): predictions at
historical bars (they mature), one monitoring pass, then the checks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from tests.conftest import require_tool
from tests.serving.conftest import create_key, free_port, hdr, make_settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "bqx-rules.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "bqx-dashboard.json"


class Live:
    def __init__(self, base: str, key: str, app: Any, settings: Any) -> None:
        self.base, self.key, self.app, self.settings = base, key, app, settings


@pytest.fixture(scope="module")
def live(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import uvicorn

    from bqx.monitoring.run import run_pass
    from bqx.serving.app import create_app

    home = tmp_path_factory.mktemp("dash") / "served"
    shutil.copytree(trained_home, home)
    s = make_settings(home)
    s.monitor.gauges_refresh_s = 0.3
    key = create_key(s, "reader")
    app = create_app(s)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert th.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=base, headers=hdr(key), timeout=30) as c:
            newest = c.post("/v1/predict", json={"pair": "EURUSD"}).json()
            last = pd.Timestamp(newest["timestamp"])
            # 40 decisions per pair over the 7 h before the last bar: their targets are known
            items = [
                {"pair": p, "timestamp": (last - pd.Timedelta(minutes=70 + 10 * k)).isoformat()}
                for p in ("EURUSD", "USDJPY")
                for k in range(40)
            ]
            r = c.post("/v1/predict/batch", json={"items": items})
            assert r.status_code == 200 and r.json()["failed"] == 0, r.text
            assert c.post("/v1/predict", json={"pair": "XXXYYY"}).status_code == 422
            assert httpx.get(f"{base}/v1/alerts").status_code == 401  # auth failure series
        svc = app.state.ctx.service
        assert svc.flush() and svc._capture is not None and svc._capture.flush()
        rep = run_pass(svc.state, svc.store, svc.registry, now=last, notifiers=[])
        assert rep["errors"] == [] and rep["run_id"] > 0, rep["errors"]
        assert rep["quality"]["rows"], "no matured decision: the pass has nothing to show"
        time.sleep(1.0)  # > 3 gauge refreshes
        yield Live(base, key, app, s)
    finally:
        server.should_exit = True
        th.join(timeout=30)


# -- gauges and deploy files ----------------------------------------------------------------
NAME = re.compile(r"\bbqx_[a-zA-Z0-9_:]+")


def referenced_names() -> set[str]:
    """Metric names in the PromQL expressions of both deploy files."""
    exprs: list[str] = []
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        exprs += [r["expr"] for r in g["rules"]]

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    exprs.append(v)
                elif k == "query" and isinstance(v, dict | str):
                    exprs.append(json.dumps(v))
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(json.loads(GRAFANA.read_text()))
    return {m for e in exprs for m in NAME.findall(e)}


def exported(body: str) -> set[str]:
    """Sample names with at least one sample in a /metrics body (histograms as _bucket,
    _sum, _count; counters as _total)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for f in text_string_to_metric_families(body) for s in f.samples}


def missing(names: set[str], have: set[str]) -> set[str]:
    return {n for n in names if n not in have}


def test_gauges_and_deploy_files_use_exported_names(live: Live) -> None:
    body = httpx.get(f"{live.base}/metrics").text
    have = exported(body)
    names = referenced_names()
    assert len(names) >= 20  # both files parsed (not a vacuous check)
    assert missing(names, have) == set(), "used in deploy/ but not exported"
    assert missing({"bqx_not_a_metric"}, have) == {"bqx_not_a_metric"}
    # bounded drift series: one per pair (and level), never one per feature
    drift = [ln for ln in body.splitlines() if ln.startswith("bqx_drift_worst_kl{")]
    assert sorted(re.findall(r'pair="(\w+)"', "\n".join(drift))) == ["EURUSD", "USDJPY"]
    assert 'bqx_live_r2{pair="EURUSD",version="1",window="1d"}' in body
    assert re.search(r"^bqx_alerts_open\{severity=\"critical\"\} \d", body, re.M), [
        ln for ln in body.splitlines() if "alerts_open" in ln
    ]
    assert re.search(r"^bqx_monitoring_last_pass_errors 0\.0$", body, re.M)


def test_dashboard_data_requires_a_reader_key(live: Live) -> None:
    assert httpx.get(f"{live.base}/v1/monitoring/dashboard").status_code == 401
    d = httpx.get(f"{live.base}/v1/monitoring/dashboard", headers=hdr(live.key)).json()
    assert {r["pair"] for r in d["production"]} == {"EURUSD", "USDJPY", "GBPUSD"}
    assert {q["pair"] for q in d["run"]["quality"]} == {"EURUSD", "USDJPY"}
    assert set(d["run"]["drift"]) == {"EURUSD", "USDJPY"}
    assert d["traffic"] and any(p["per_min"] > 0 for p in d["traffic"])
    page = httpx.get(f"{live.base}/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "EURUSD" not in page.text and "<script src" not in page.text  # no data, no CDN
    text = page.text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace
    assert "http://" not in text and "https://" not in text


# -- the page in a real browser -------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium() -> str:
    path = _chromium()
    require_tool("Chromium", None if path else "no Chromium on PATH")
    assert path is not None
    return path


def test_dashboard_renders_live_data_in_chromium(chromium: str, live: Live, tmp_path) -> None:
    r = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", "--dump-dom",
            f"{live.base}/dashboard#key={live.key}",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    dom, log = r.stdout, r.stderr
    assert r.returncode == 0, log[-2000:]
    assert 'data-loaded="1"' in dom, dom[:3000]
    assert re.search(
        r'<tr[^>]*data-pair="EURUSD"[^>]*data-version="1"[^>]*class="quality-row"', dom
    )
    assert re.search(r'<tr[^>]*data-pair="GBPUSD"[^>]*class="version-row"', dom)
    assert re.search(r'<tr[^>]*data-pair="USDJPY"[^>]*class="drift-row"', dom)
    assert "±" in dom  # live figures carry their uncertainty
    assert 'class="series series-per_min"' in dom  # the traffic chart drew a line
    assert 'id="open-critical"' in dom
    assert 'class="js-error"' not in dom, dom[dom.find('class="js-error"') :][:600]
    # Chromium logs every console message as ":CONSOLE"; errors name their JS error type
    bad = [
        ln
        for ln in log.splitlines()
        if ":CONSOLE" in ln and re.search(r"Uncaught|\w*Error\b|Failed to load resource", ln)
    ]
    assert bad == [], bad
    assert live.key not in dom  # the key leaves the address bar and is not written anywhere


# -- the demo's new lines (the whole demo takes minutes: its new parts are tested alone) -----
def test_demo_traffic_and_dashboard_hint(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_traffic", ROOT / "scripts/demo_traffic.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    end = httpx.post(
        f"{live.base}/v1/predict", json={"pair": "GBPUSD"}, headers=hdr(live.key)
    ).json()["timestamp"]
    args = ["--url", live.base, "--end", end, "--pairs", "EURUSD,GBPUSD", "--n", "3"]
    assert mod.main([*args, "--key", live.key, "--live", "2"]) == 0
    assert "8 forecasts served, 0 refused, 2 pairs" in capsys.readouterr().out
    assert mod.main([*args, "--key", "nope"]) == 1
    assert "refused the key" in capsys.readouterr().err
    # serve_demo.sh keeps the key in the demo home; demo.sh prints the URL beside the curl
    (tmp_path / "demo.key").write_text("k3y\n")
    fn = re.search(
        r"^dashboard_hint\(\) \{.*?^\}", (ROOT / "scripts/demo.sh").read_text(), re.M | re.S
    )
    assert fn is not None
    out = subprocess.run(
        ["bash", "-c", fn.group(0) + "\ndashboard_hint"],
        env={"BQX_HOME": str(tmp_path), "BQX_SERVE__PORT": "8123", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    assert "http://127.0.0.1:8123/dashboard#key=k3y" in out
    assert "curl -sS -X POST http://127.0.0.1:8123/v1/predict -H 'X-API-Key: k3y'" in out
    assert 'demo.key")' in (ROOT / "scripts/serve_demo.sh").read_text()
