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
benchmarks/results/capture_http.json (``--out`` to change).

``--ab OLD_SRC --runs R``: R ``--http`` runs in child processes, alternating another source
tree (e.g. ``git archive main src``) and this one (order old, new, old, ... with the new
code first in every other pair), each over the same trained home and each alternating
capture on/off per request; the 1-minute load average before and after each run; medians
of the added p50/p99 per code, and per request the context switches (wake-ups) and CPU of
the "on" app's capture writer thread (/proc). Raw JSON to benchmarks/results/capture_on_off_ab.json.
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
    ap.add_argument("--out", type=Path, default=RESULTS / "capture_http.json")
    ap.add_argument("--ab", type=Path, default=None, help="old source tree to alternate with")
    ap.add_argument("--runs", type=int, default=6)
    a = ap.parse_args()
    setup(a.home)
    if a.ab is not None:
        ab_bench(a)
        return
    if a.http:
        http_bench(a.home, a.n, a.out)
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


RESULTS = Path(__file__).resolve().parent / "results"


def _thread_counters(tid: int | None) -> dict | None:
    """Context switches (voluntary + involuntary: each is a sleep/wake or a preemption)
    and CPU seconds of one thread of this process, from /proc (Linux)."""
    import os

    if tid is None:
        return None
    try:
        status = Path(f"/proc/self/task/{tid}/status").read_text()
        stat = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    sw = sum(int(ln.split()[1]) for ln in status.splitlines() if "ctxt_switches" in ln)
    hz = os.sysconf("SC_CLK_TCK")
    return {"switches": sw, "cpu_s": (int(stat[11]) + int(stat[12])) / hz}


def ab_bench(a: argparse.Namespace) -> None:
    """Alternate ``--http`` runs of the old and this source tree in child processes."""
    import os
    import platform
    import subprocess
    import tempfile

    srcs = {"old": str(a.ab.resolve()), "new": str(Path(__file__).resolve().parents[1] / "src")}
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    order = []
    for r in range(a.runs):
        name = ("old", "new")[(r + (r // 2)) % 2]  # old new new old old new ...
        order.append(name)
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "run.json"
            env = {**os.environ, "PYTHONPATH": srcs[name]}
            load0 = os.getloadavg()[0]
            subprocess.run(
                [sys.executable, __file__, "--http", "--n", str(a.n), "--home", str(a.home),
                 "--out", str(out)],
                env=env, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            res = json.loads(out.read_text())
        res["load1_before"], res["load1_after"] = round(load0, 2), round(os.getloadavg()[0], 2)
        runs[name].append(res)
        print(name, r, res["added_p50_ms"], res["added_p99_ms"], res["load1_after"],
              file=sys.stderr)  # fmt: skip

    def med(xs: list[float]) -> float:
        return round(float(np.median(xs)), 3)

    summary = {
        k: {
            "runs": len(v),
            "p50_on_ms": med([x["on"]["p50_ms"] for x in v]),
            "p50_off_ms": med([x["off"]["p50_ms"] for x in v]),
            "p99_on_ms": med([x["on"]["p99_ms"] for x in v]),
            "p99_off_ms": med([x["off"]["p99_ms"] for x in v]),
            "added_p50_ms": med([x["added_p50_ms"] for x in v]),
            "added_p99_ms": med([x["added_p99_ms"] for x in v]),
            "added_p50_ms_each": [x["added_p50_ms"] for x in v],
            "load1": [x["load1_after"] for x in v],
            "written": [x["capture_writer"]["on"]["written"] for x in v],
            "dropped": [x["capture_writer"]["on"]["dropped"] for x in v],
            "writer_wakeups_per_request": [
                (x.get("writer_thread") or {}).get("wakeups_per_request") for x in v
            ],
            "writer_cpu_us_per_request": [
                (x.get("writer_thread") or {}).get("cpu_us_per_request") for x in v
            ],
        }
        for k, v in runs.items()
        if v
    }
    out = {
        "benchmark": "capture_http_ab",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared)",
        "how": f"bench_capture.py --ab {a.ab} --runs {a.runs} --n {a.n}: --http runs "
        "alternating the old source tree and this one, each alternating capture on/off per "
        "request over copies of one trained home",
        "order": order,
        "median": summary,
        "runs": runs,
    }
    print(json.dumps(summary, indent=1))
    dst = a.out if a.out != RESULTS / "capture_http.json" else RESULTS / "capture_on_off_ab.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


def http_bench(home: Path, n: int, dst: Path) -> None:
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
    wt = clients["on"].app.state.ctx.service._capture.writer._thread  # type: ignore[attr-defined]
    w0 = _thread_counters(wt.native_id if wt is not None else None)
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
    w1 = _thread_counters(wt.native_id if wt is not None else None)
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
    if w0 and w1:  # the "on" app's capture writer thread during the timed requests
        out["writer_thread"] = {
            "wakeups_per_request": round((w1["switches"] - w0["switches"]) / n, 3),
            "cpu_us_per_request": round((w1["cpu_s"] - w0["cpu_s"]) / n * 1e6, 1),
        }
    out["load1_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
