"""Local process pool vs the 2-node Ray cluster of scripts/cluster_local.sh (issue 16).

Run inside a started cluster's environment (``set -a; . DIR/env; set +a``) with small bars::

    BQX_BAR_INTERVAL=15min BQX_HORIZON=8 BQX_SERVE__CACHE_SIZE=28 \\
        scripts/cluster_local.sh start /tmp/bqxc
    set -a; . /tmp/bqxc/env; set +a
    BQX_BAR_INTERVAL=15min BQX_HORIZON=8 python benchmarks/bench_cluster.py --days 100

Same data for both backends (simulated 28 pairs in the cluster's PostgreSQL store); both
register into the MLflow server; the Ray run also promotes, then the API replica 2 is asked
once per pair (cold: the model is downloaded through the MLflow server) and ``--warm``
times round-robin over all pairs (warm). Prints JSON with wall times, per-task times and the
projection ``(training + feature-build task seconds) / N + serial driver time`` for N nodes of
one CPU each (the floor is the slowest single task).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np


def _train(backend: str, pairs: list[str], promote: bool) -> dict[str, Any]:
    from bqx.config import load_settings
    from bqx.training.parallel import train_many

    s = load_settings()
    t0 = time.perf_counter()
    outs = train_many(pairs, s, jobs=2, backend=backend, promote=promote)
    wall = time.perf_counter() - t0
    secs = [o.seconds for o in outs]
    return {
        "backend": backend,
        "wall_s": round(wall, 1),
        "ok": sum(o.ok for o in outs),
        "task_s_sum": round(sum(secs), 1),
        "task_s_median": round(float(np.median(secs)), 2),
        "nodes": len({o.node for o in outs}),
        "localise_s_median": round(
            float(np.median([o.info.get("localise_s", 0.0) for o in outs])), 2
        ),
        "localise_s_sum": round(sum(o.info.get("localise_s", 0.0) for o in outs), 1),
    }


def _walk(backend: str, pairs: list[str], windows: int) -> dict[str, Any]:
    from bqx.backtest.walkforward import WalkForwardConfig, walk_forward_predictions
    from bqx.config import load_settings

    s = load_settings()
    cfg = WalkForwardConfig(train_months=1, test_months=1, windows=windows, model="rf")
    t0 = time.perf_counter()
    _, info = walk_forward_predictions(pairs, s, cfg, jobs=2, backend=backend)
    return {
        "backend": backend,
        "wall_s": round(time.perf_counter() - t0, 1),
        "windows": info["windows"],
        "errors": len(info["errors"]),
    }


def _predict(pairs: list[str], warm_n: int) -> dict[str, Any]:
    import httpx

    from bqx.config import load_settings
    from bqx.serving.auth import ApiKeys, Role
    from bqx.state import open_state

    s = load_settings()
    _, key = ApiKeys(open_state(s)).create_key(Role.reader, name="bench", rate=10_000)
    url = os.environ["BQX_CLUSTER_API2"]
    cold, warm = [], []
    with httpx.Client(headers={"X-API-Key": key}, timeout=60) as c:
        for p in pairs:
            t = time.perf_counter()
            r = c.post(f"{url}/v1/predict", json={"pair": p})
            cold.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        for i in range(warm_n):
            t = time.perf_counter()
            r = c.post(f"{url}/v1/predict", json={"pair": pairs[i % len(pairs)]})
            warm.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text

    def q(x: list[float], p: float) -> float:
        return round(float(np.percentile(np.array(x) * 1e3, p)), 1)

    return {
        "cold_ms": {"p50": q(cold, 50), "p99": q(cold, 99), "n": len(cold)},
        "warm_ms": {"p50": q(warm, 50), "p99": q(warm, 99), "n": len(warm)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=100)
    ap.add_argument("--pairs", type=int, default=28)
    ap.add_argument("--wf-pairs", type=int, default=4)
    ap.add_argument("--wf-windows", type=int, default=2)
    ap.add_argument("--warm", type=int, default=300)
    a = ap.parse_args()
    import subprocess
    import sys
    from pathlib import Path

    from bqx.config import load_settings
    from bqx.data.store import open_store
    from bqx.features.store import FeatureStore
    from bqx.universe import PAIRS

    s = load_settings()
    pairs = list(PAIRS)[: a.pairs]
    exe = str(Path(sys.executable).parent / "bqx")
    subprocess.run([exe, "data", "generate", "--days", str(a.days), "--seed", "1",
                    "--signal-strength", "0.1", "--json"], check=True, capture_output=True)  # fmt: skip
    store = open_store(settings=s)
    FeatureStore(s.features_dir, horizon=s.horizon, target=s.target).build(store, pairs)
    store.close()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "days": a.days, "pairs": len(pairs)}
    out["train"] = [_train("ray", pairs, True), _train("local", pairs, False)]
    wf = pairs[: a.wf_pairs]
    out["walk_forward"] = [_walk("ray", wf, a.wf_windows), _walk("local", wf, a.wf_windows)]
    out["predict_via_mlflow_server"] = _predict(pairs, a.warm)
    # time on N one-CPU nodes = (training + node-local feature build) task-seconds / N
    # + what the driver does serially (registration, promotion, scheduling): measured on 2
    r = out["train"][0]
    work = r["task_s_sum"] + r["localise_s_sum"]
    driver = max(0.0, r["wall_s"] - work / 2)
    out["projection_train_s"] = {
        "driver_serial_s": round(driver, 1),
        **{f"{n}_nodes": round(work / n + driver, 1) for n in (2, 4, 8, 28)},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
