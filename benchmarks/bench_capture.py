"""Input capture on vs off: ``PredictionService.predict`` latency side by side.

    .venv/bin/python benchmarks/bench_capture.py [--home DIR] [--n 2000]
    .venv/bin/python benchmarks/bench_capture.py --http [--n 2000]

Two live services over copies of the same home (capture_rate 1.0 and 0.0), requests
alternating between them at the same random historical timestamps (the decision writer is
on in both). Prints p50/p99 (ms) of each and the ratios, as JSON.

``--http``: the whole ``POST /v1/predict`` (auth, validation, middleware, JSON) through
two apps in this process (FastAPI TestClient, ASGI in-process - no socket, so the
difference is not drowned in network noise), each request at the newest bar (the hot
path: features cached, no store read), alternating on/off per request with the order
flipped every other request; client-side latency. Raw JSON to
benchmarks/results/capture_http.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_outage import PAIRS, setup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("/tmp/bqx-bench-capture"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--http", action="store_true", help="POST /v1/predict via the app")
    a = ap.parse_args()
    setup(a.home)
    if a.http:
        http_bench(a.home, a.n)
        return
    from bqx.config import Settings
    from bqx.serving.service import PredictionService

    svcs = {}
    for name, rate in (("on", 1.0), ("off", 0.0)):
        h = a.home.parent / f"{a.home.name}-{name}"
        shutil.rmtree(h, ignore_errors=True)
        shutil.copytree(a.home, h)
        s = Settings(home=h)
        s.monitor.capture_rate = rate
        svc = PredictionService(s)
        svc.start()
        svcs[name] = svc
    rng = np.random.default_rng(1)
    t0 = pd.Timestamp("2024-01-02 01:00", tz="UTC")
    offs = rng.integers(0, 3 * 1440, a.n)  # Tue-Fri: no weekend (stale) times
    lat: dict[str, list[float]] = {"on": [], "off": []}
    for i, o in enumerate(offs):
        pair = PAIRS[i % len(PAIRS)]
        ts = t0 + pd.Timedelta(minutes=int(o))
        order = ("on", "off") if i % 2 else ("off", "on")
        for name in order:
            t = time.perf_counter()
            svcs[name].predict(pair, ts)
            lat[name].append((time.perf_counter() - t) * 1000)
    for svc in svcs.values():
        svc.close()
    out = {
        k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for k, v in lat.items()
    }
    out["ratio_on_off"] = {q: out["on"][q] / out["off"][q] for q in ("p50_ms", "p99_ms")}
    out["n"] = a.n
    print(json.dumps(out, indent=1))


def http_bench(home: Path, n: int) -> None:
    import os
    import platform

    from fastapi.testclient import TestClient

    from bqx.config import Settings
    from bqx.serving.app import create_app
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    clients, keys, writers = {}, {}, {}
    for name, rate in (("on", 1.0), ("off", 0.0)):
        h = home.parent / f"{home.name}-http-{name}"
        shutil.rmtree(h, ignore_errors=True)
        shutil.copytree(home, h)
        s = Settings(home=h)
        s.monitor.capture_rate = rate
        keys[name] = ApiKeys(open_state(s)).create_key("reader", rate=1e6)[1]
        clients[name] = TestClient(create_app(s))
        clients[name].__enter__()
    for name, c in clients.items():  # warm-up: models loaded, features cached
        for p in PAIRS:
            for _ in range(20):
                r = c.post("/v1/predict", json={"pair": p}, headers={"X-API-Key": keys[name]})
                assert r.status_code == 200, r.text
    lat: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(n):
        pair = PAIRS[i % len(PAIRS)]
        for name in ("on", "off") if i % 2 else ("off", "on"):
            t = time.perf_counter()
            r = clients[name].post(
                "/v1/predict", json={"pair": pair}, headers={"X-API-Key": keys[name]}
            )
            lat[name].append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
    for name, c in clients.items():
        svc = c.app.state.ctx.service  # type: ignore[attr-defined]
        cap = getattr(svc, "_capture", None)
        writers[name] = cap.writer.status() if cap is not None and hasattr(cap, "writer") else None
        c.__exit__(None, None, None)
    out: dict = {
        "benchmark": "capture_http",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "n_per_arm": n,
        "route": "POST /v1/predict (newest bar, TestClient in-process)",
    }
    for k, v in lat.items():
        out[k] = {
            "p50_ms": round(float(np.percentile(v, 50)), 3),
            "p99_ms": round(float(np.percentile(v, 99)), 3),
            "mean_ms": round(float(np.mean(v)), 3),
        }
    out["added_p50_ms"] = round(out["on"]["p50_ms"] - out["off"]["p50_ms"], 3)
    out["added_p99_ms"] = round(out["on"]["p99_ms"] - out["off"]["p99_ms"], 3)
    out["capture_writer"] = writers
    print(json.dumps(out, indent=1))
    dst = Path(__file__).resolve().parent / "results" / "capture_http.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
