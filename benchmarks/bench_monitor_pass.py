"""One ``bqx monitor run`` over 28 pairs x 1 day of captured decisions (issue 12).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_monitor_pass.py [--home DIR] [--reuse]

Setup (not timed): a project home with 3 simulated days of bars for all 28 pairs (DuckDB),
one registered version per pair in MLflow carrying a monitoring baseline of 70 features
(+ prediction, target) built from 20,000 rows of the feature process, and in the state DB
(SQLite, the default) 28 x 1,440 decisions of one trading day with their 70 captured input
values each (written through the state API: ``log_decisions``, ``write_captures``).
Features are 60-bar rolling means of noise (autocorrelated like the served ones).

Timed: ``bqx monitor run --as-of <last bar> --json`` as a child process, twice:
the first pass matures the 40,320 decisions (reads bars, computes targets, writes them),
the second finds nothing new to mature (the steady state of a pass every few minutes).
Wall time and peak RSS (``wait4`` rusage) of each child; the report's own ``seconds``.
Raw JSON to benchmarks/results/monitor_pass.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_FEAT, DAY, HORIZON = 70, 1440, 60
CLI_ARGS = ("monitor", "run", "--as-of")
RESULTS = Path(__file__).resolve().parent / "results" / "monitor_pass.json"


def _rolling(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.normal(size=(n + 59, k))
    cs = np.cumsum(np.vstack([np.zeros((1, k)), z]), axis=0)
    return (cs[60:] - cs[:-60]) / np.sqrt(60)


def setup(home: Path) -> str:
    from mlflow import MlflowClient

    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.monitoring.baseline import BASELINE_FILE, training_baseline
    from bqx.registry import Registry, model_name
    from bqx.state import new_decision_id, open_state
    from bqx.universe import PAIRS

    shutil.rmtree(home, ignore_errors=True)
    s = Settings(home=home)
    s.ensure_home()
    bars = generate(days=3, pairs=None, seed=3, start="2024-01-02").bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    reg = Registry(s)
    c = MlflowClient(s.resolved_tracking_uri)
    exp = reg.experiment_id()  # artifacts under the home, as bqx train puts them
    state = open_state(s)
    rng = np.random.default_rng(0)
    names = [f"feat_{i:02d}" for i in range(N_FEAT)]
    as_of = None
    for pair in PAIRS:
        Xtr = pd.DataFrame(_rolling(rng, 20_000, N_FEAT), columns=names)
        pred = Xtr.iloc[:, 0].to_numpy() * 1e-4
        y = pred + rng.normal(size=len(Xtr)) * 1e-3
        base = training_baseline(Xtr, names, pred, y)
        run = c.create_run(exp)
        c.log_dict(run.info.run_id, base, f"model/{BASELINE_FILE}")
        c.set_terminated(run.info.run_id)
        c.create_registered_model(model_name(pair))
        mv = c.create_model_version(
            model_name(pair), f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        for k, v in (("pair", pair), ("test_r2", "0.01"), ("test_da", "0.52")):
            c.set_model_version_tag(model_name(pair), mv.version, k, v)
        c.set_registered_model_alias(model_name(pair), "production", mv.version)
        # one trading day of served bars, each matured HORIZON bars later within the data
        ts = pd.DatetimeIndex(sorted(bars.loc[bars["pair"] == pair, "ts"].unique()))
        assert len(ts) > DAY + HORIZON
        served = ts[-(DAY + HORIZON) : -HORIZON]
        as_of = served[-1]
        X = _rolling(rng, DAY, N_FEAT)
        ids = [new_decision_id() for _ in range(DAY)]
        state.log_decisions(
            {"decision_id": i, "pair": pair, "asof_ts": t, "horizon": HORIZON,
             "prediction": float(x[0] * 1e-4), "model_version": str(mv.version),
             "request_time": t}
            for i, t, x in zip(ids, served, X, strict=True)
        )  # fmt: skip
        rows = [
            {"decision_id": i, "captured_at": t, "pair": pair, "asof_ts": t,
             "model_version": str(mv.version),
             "values": dict(zip(names, map(float, x), strict=True))}
            for i, t, x in zip(ids, served, X, strict=True)
        ]  # fmt: skip
        state.write_captures(rows)
    return str(as_of)


def run_cli(home: Path, as_of: str) -> dict:
    env = {**os.environ, "BQX_HOME": str(home)}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", "from bqx.cli import main; main()", *CLI_ARGS, as_of, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out = p.stdout.read() if p.stdout else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, out[-2000:]
    rep = json.loads(out)
    drift = rep.get("drift") or {}
    return {
        "wall_s": round(wall, 3),
        "pass_seconds": round(rep["seconds"], 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "matured": (rep.get("mature") or {}).get("matured"),
        "quality_rows": len(rep["quality"]["rows"]),
        "drift_pairs": len(drift.get("pairs", [])),
        "drift_columns": sum(len(p["columns"]) for p in drift.get("pairs", [])),
        "errors": rep["errors"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("/tmp/bqx-bench-monitor"))
    ap.add_argument("--reuse", action="store_true", help="skip setup (home from a prior run)")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    meta = a.home / "bench_as_of.txt"
    t0 = time.perf_counter()
    if a.reuse and meta.exists():
        as_of = meta.read_text().strip()
    else:
        as_of = setup(a.home)
        meta.write_text(as_of)
    setup_s = time.perf_counter() - t0
    first = run_cli(a.home, as_of)
    second = run_cli(a.home, as_of)
    out = {
        "benchmark": "monitor_pass",
        "label": a.label,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "pairs": 28,
        "decisions": 28 * DAY,
        "captured_features": N_FEAT,
        "setup_s": round(setup_s, 1),
        "first_pass": first,
        "second_pass": second,
    }
    print(json.dumps(out, indent=2))
    dst = RESULTS.with_name(f"monitor_pass_{a.label}.json") if a.label else RESULTS
    dst.parent.mkdir(exist_ok=True)
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
