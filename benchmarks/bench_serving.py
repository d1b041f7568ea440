"""Serving benchmark (issue 5 "Must show"): ``POST /v1/predict`` against a real ``bqx serve``
on 127.0.0.1, RF and LightGBM models, 1 and 2 workers, at 50 req/s and at saturation; the
cold-load time of one model; batch prediction of one month x 28 pairs. Prints JSON.

    .venv/bin/python benchmarks/bench_serving.py [--home DIR] [--days 45] [--duration 8]
    .venv/bin/python benchmarks/bench_serving.py --limiter-only   # per-worker vs Redis limits

Setup (cached in ``--home``; ~3 min the first time): ``--days`` of simulated M1 bars for all
28 pairs in DuckDB; an RF with the SPEC parameters (100 trees, depth 10) for EURUSD and a
LightGBM (defaults) for USDJPY, trained on all but the last days, registered and promoted.

Scenarios per (model, workers):

* ``hit``: every request asks for the newest bar: after the first request the features and
  the prediction of that bar come from the per-bar cache (what live clients polling the
  latest bar see; the decision is still logged and returned per request).
* ``miss``: every request asks for a *different* bar of the last day (a timestamp), so
  features (~6 ms) and the model run on each request: the worst case of the online path.

The load generator (benchmarks/loadgen.py) runs on the same 2 cores as the server, so
saturation numbers with 2 workers are bounded by 3 busy processes sharing 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import build_requests, fixed_rate, run, saturate

BQX = str(Path(sys.executable).parent / "bqx")
RF_PAIR, LGB_PAIR = "EURUSD", "USDJPY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(home: Path, days: int) -> dict[str, Any]:
    """Data + two production models in ``home`` (skipped when already there)."""
    marker = home / "bench_ready.json"
    if marker.exists():
        return json.loads(marker.read_text())  # type: ignore[no-any-return]
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.ensure_home()
    t0 = time.perf_counter()
    bars = generate(days=days, pairs=None, seed=7, signal_strength=0.15).bars
    open_store(settings=s).upsert(bars)
    info: dict[str, Any] = {
        "bars": len(bars),
        "days": days,
        "seconds_data": time.perf_counter() - t0,
    }
    reg = Registry(s)
    for pair, model in ((RF_PAIR, "rf"), (LGB_PAIR, "lightgbm")):
        t1 = time.perf_counter()
        df = F.build(bars, pair, with_target=True, dtype="float32")
        r = train_frame(pair, df, s, model=model)
        v = reg.log_and_register(r)
        reg.promote(pair, v, actor="bench", reason="benchmark")
        info[f"train_{model}"] = {
            "pair": pair,
            "rows_train": r.rows["train"],
            "features": len(r.artifact.features),
            "fit_s": round(r.seconds["fit"], 1),
            "total_s": round(time.perf_counter() - t1, 1),
        }
    marker.write_text(json.dumps(info))
    return info


def cold_load(home: Path) -> dict[str, Any]:
    """A fresh process: import MLflow + open the registry, then load one model."""
    code = f"""
import json, time
t0 = time.perf_counter()
from bqx.config import Settings
from bqx.registry import Registry
reg = Registry(Settings(home={str(home)!r}))
reg.client
t1 = time.perf_counter()
out = {{}}
for pair in ({RF_PAIR!r}, {LGB_PAIR!r}):
    a = time.perf_counter()
    art = reg.load(pair)
    import numpy as np
    art.predict_vector(np.zeros(len(art.all_columns)))
    out[art.model] = round(time.perf_counter() - a, 3)
print(json.dumps({{"import_mlflow_and_open_registry_s": round(t1 - t0, 3), "load_s": out}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _key(home: Path) -> str:
    from bqx.config import Settings
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    return ApiKeys(open_state(Settings(home=home))).create_key("reader", rate=1e6)[1]


def _timestamps(home: Path, pair: str, n: int) -> list[str]:
    from bqx.config import Settings
    from bqx.data.store import open_store

    st = open_store(settings=Settings(home=home))
    last = st.latest([pair])[pair]
    df = st.read_asof(last, n, [pair])
    return [t.isoformat() for t in df["ts"]]


def serve(
    home: Path,
    workers: int,
    nodelay: bool = True,
    rate_limit_url: str | None = None,
    src: str | None = None,
) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    if src:  # serve another checkout's code (A/B runs)
        env["PYTHONPATH"] = src
    env.update({"BQX_HOME": str(home), "BQX_SERVE__PREWARM": json.dumps([RF_PAIR, LGB_PAIR])})
    if rate_limit_url:
        env["BQX_SERVE__RATE_LIMIT_URL"] = rate_limit_url
    cmd = [BQX, "serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    if not nodelay:
        cmd.append("--no-nodelay")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bqx serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not become ready")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_test(
    base: str, key: str, pair: str, ts: list[str], duration: float, rate: float = 50.0
) -> dict[str, Any]:
    url = f"{base}/v1/predict"
    hit = build_requests(url, [{"pair": pair}], key)
    miss = build_requests(url, [{"pair": pair, "timestamp": t} for t in ts], key)
    run(saturate(url, hit, 1.0, 4))  # warm-up (connections, caches)
    out: dict[str, Any] = {}
    out["hit_50rps"] = run(fixed_rate(url, hit, rate, duration)).summary()
    out["hit_saturation"] = run(saturate(url, hit, duration, 8)).summary()
    # each worker has its own feature cache: distinct bars stay misses while
    # requests per worker < len(ts)
    out["miss_50rps"] = run(
        fixed_rate(url, miss, rate, min(duration, len(ts) / rate / 2))
    ).summary()
    out["miss_saturation"] = run(saturate(url, miss[::-1], min(duration, 5.0), 8)).summary()
    return out


def miss_side_by_side(
    home: Path, key: str, old_src: str, new_src: str, rounds: int, duration: float
) -> dict[str, Any]:
    """Uncached ``POST /v1/predict`` (issue 15 item 4), old vs new code, one worker each,
    alternated: per round and model, a fresh server (empty caches) gets every bar of the
    in-memory day once (a different historical bar per request, none repeated, so no
    feature or prediction cache hit), 8 closed-loop clients."""
    ts = {p: _timestamps(home, p, 1400) for p in (RF_PAIR, LGB_PAIR)}
    out: dict[str, Any] = {"old_src": old_src, "new_src": new_src, "rounds": []}
    for r in range(rounds):
        order = (("old", old_src), ("new", new_src))
        row: dict[str, Any] = {}
        for name, src in order if r % 2 == 0 else order[::-1]:
            proc, base = serve(home, 1, src=src)
            try:
                url = f"{base}/v1/predict"
                for model, pair in (("rf", RF_PAIR), ("lightgbm", LGB_PAIR)):
                    miss = build_requests(
                        url, [{"pair": pair, "timestamp": t} for t in ts[pair]], key
                    )
                    hit = build_requests(url, [{"pair": pair}], key)
                    run(saturate(url, hit, 0.5, 4))  # warm-up: connections, model load
                    res = run(saturate(url, miss, duration, 8, once=True)).summary()
                    row[f"{name}_{model}"] = res
                    print(f"round {r} {name} {model}: {json.dumps(res)}", file=sys.stderr)
            finally:
                _stop(proc)
        out["rounds"].append(row)
    for k in out["rounds"][0]:
        out[f"median_req_per_s_{k}"] = statistics.median(x[k]["req_per_s"] for x in out["rounds"])
    return out


def cached_bar_load(base: str, key: str, duration: float) -> dict[str, Any]:
    """The RF cached-bar request (newest EURUSD bar) at 50 req/s and at saturation, after a
    1 s warm-up: the comparison load of the TCP_NODELAY and rate-limiter variants."""
    url = f"{base}/v1/predict"
    hit = build_requests(url, [{"pair": RF_PAIR}], key)
    run(saturate(url, hit, 1.0, 4))
    return {
        "hit_50rps": run(fixed_rate(url, hit, 50.0, duration)).summary(),
        "hit_saturation": run(saturate(url, hit, duration, 8)).summary(),
    }


def limiter_side_by_side(
    home: Path, key: str, workers: list[int], url: str, duration: float, rounds: int = 3
) -> dict[str, Any]:
    """The cached-bar RF request with per-worker buckets vs one shared Redis bucket per key
    (``serve.rate_limit_url``): the cost of a global limit is one Redis round trip. The
    configurations alternate within each round and the medians over rounds are reported
    (this machine's noise moves single runs by up to 2x)."""
    import statistics

    raw: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(rounds):
        for w in workers:
            for name, rl in (("per_worker", None), ("redis", url)):
                proc, base = serve(home, w, rate_limit_url=rl)
                try:
                    res = cached_bar_load(base, key, duration)
                    metrics = httpx.get(f"{base}/metrics", timeout=5).text
                    res["backend_errors"] = sum(
                        float(line.split()[-1])
                        for line in metrics.splitlines()
                        if line.startswith("bqx_rate_limit_backend_errors_total")
                    )
                    if rl:
                        ready = httpx.get(f"{base}/readyz", timeout=5).json()
                        assert ready["checks"]["rate_limiter"] == "shared", ready
                finally:
                    _stop(proc)
                raw.setdefault(f"rf_w{w}_{name}", []).append(res)
                print(f"round {rnd} limiter {name} w{w}: {json.dumps(res)}", file=sys.stderr)

    def med(runs: list[dict[str, Any]], scen: str, field: str) -> float:
        return round(statistics.median(r[scen][field] for r in runs), 3)

    out: dict[str, Any] = {"rounds": rounds, "raw": raw, "median": {}}
    for cfg, runs in raw.items():
        out["median"][cfg] = {
            f"{scen}_{f}": med(runs, scen, f)
            for scen in ("hit_50rps", "hit_saturation")
            for f in ("req_per_s", "p50_ms", "p99_ms")
        }
    return out


def batch(home: Path) -> dict[str, Any]:
    """One month x 28 pairs on the batch path (the EURUSD RF serves every pair: the cost of
    an RF does not depend on which pair it was trained for)."""
    from bqx.config import Settings
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.serving.batch import predict_batch
    from bqx.universe import PAIRS

    s = Settings(home=home)
    art = Registry(s).load(RF_PAIR)
    last = open_store(settings=s).latest([RF_PAIR])[RF_PAIR]
    import pandas as pd

    start = last - pd.Timedelta(days=30)
    res = predict_batch(PAIRS, start, last, s, artifacts={p: art for p in PAIRS})
    return {
        "pairs": 28,
        "start": start.isoformat(),
        "end": last.isoformat(),
        "model": "rf",
        "rows": len(res.frame),
        "wall_s": round(res.seconds["total"], 2),
        "rows_per_s": round(res.rows_per_s, 1),
        "seconds": {k: round(v, 2) for k, v in res.seconds.items()},
    }


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    vers = {
        p: md.version(p)
        for p in (
            "fastapi",
            "uvicorn",
            "uvloop",
            "httptools",
            "numpy",
            "scikit-learn",
            "lightgbm",
            "pandas",
        )
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": vers,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/bqx-bench-serving")
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="Redis for the shared rate-limit comparison ('' to skip it)",
    )
    ap.add_argument(
        "--limiter-only",
        action="store_true",
        help="only the per-worker vs Redis rate-limiter comparison",
    )
    ap.add_argument(
        "--pool-only",
        action="store_true",
        help="only predict p99 with the reconnecting store pool vs one connection "
        "(benchmarks/bench_outage.py, on a throw-away PostgreSQL)",
    )
    ap.add_argument(
        "--miss-ab",
        metavar="OLD_SRC",
        help="only uncached predict throughput, this checkout vs OLD_SRC (e.g. main's src), "
        "one worker, alternated",
    )
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    if a.miss_ab:
        home = Path(a.home)
        res: dict[str, Any] = {"machine": machine(), "setup": setup(home, a.days)}
        new_src = str(Path(__file__).resolve().parents[1] / "src")
        res["load_avg_1m_at_start"] = round(os.getloadavg()[0], 1)
        res["miss_ab"] = miss_side_by_side(home, _key(home), a.miss_ab, new_src, a.rounds, 30.0)
        text = json.dumps(res, indent=1)
        print(text)
        if a.out:
            Path(a.out).write_text(text + "\n")
        return
    if a.pool_only:  # issue 11: the pool/reconnect logic in the predict path, side by side
        from bench_outage import p99_side_by_side
        from bench_outage import setup as outage_setup

        outage_setup(Path(a.home + "-outage"))
        print(json.dumps(p99_side_by_side(Path(a.home + "-outage")), indent=1))
        return
    home = Path(a.home)
    result: dict[str, Any] = {"machine": machine()}
    result["setup"] = setup(home, a.days)
    result["cold_load"] = cold_load(home)
    key = _key(home)
    workers = [int(x) for x in a.workers.split(",")]
    if a.limiter_only:
        result["rate_limiter"] = limiter_side_by_side(home, key, workers, a.redis_url, a.duration)
        text = json.dumps(result, indent=1)
        print(text)
        if a.out:
            Path(a.out).write_text(text + "\n")
        return
    ts = {p: _timestamps(home, p, 1400) for p in (RF_PAIR, LGB_PAIR)}
    runs: dict[str, Any] = {}
    for w in workers:
        proc, base = serve(home, w)
        try:
            for model, pair in (("rf", RF_PAIR), ("lightgbm", LGB_PAIR)):
                runs[f"{model}_w{w}"] = load_test(base, key, pair, ts[pair], a.duration)
                print(
                    f"{model} w{w}: {json.dumps(runs[f'{model}_w{w}']['hit_saturation'])}",
                    file=sys.stderr,
                )
        finally:
            _stop(proc)
        if w > 1:  # the uvicorn shared-socket pitfall: the same without TCP_NODELAY
            proc, base = serve(home, w, nodelay=False)
            try:
                runs[f"rf_w{w}_no_nodelay"] = cached_bar_load(base, key, a.duration)
            finally:
                _stop(proc)
    result["predict"] = runs
    if a.redis_url:
        result["rate_limiter"] = limiter_side_by_side(home, key, workers, a.redis_url, a.duration)
    if not a.skip_batch:
        result["batch_month_28_pairs"] = batch(home)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
