"""Where an uncached prediction spends its CPU (issue 15 item 4), old vs new code.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_predict_cpu.py --old-src <main>/src \\
        [--home /tmp/bqx-bench-serving] [--rounds 2] [--out benchmarks/results/predict_cpu.json]

In-process, no HTTP: a live :class:`~bqx.serving.service.PredictionService` on the home of
``benchmarks/bench_serving.py`` (its setup must have run: ``--miss-ab`` or a full run), and
for every bar of the in-memory day of each model's pair, once (none repeated, so every call
misses the feature and prediction caches): the CPU time (``process_time``) of
``at_array(panel, pair, t, only=<the model's columns>)`` alone, then of
``PredictionService.predict(pair, t)`` (features + model + interval + signal + decision log
hand-off), in alternating order bar by bar (the second call of a bar finds its data in the CPU
caches). ``process_time`` counts every thread of the process, so the service's background
threads (decision writer, bar refresh) are charged to whichever call they overlap. Each (code, round) runs in a fresh process; the order alternates
old, new, new, old, ... Medians and p99 per code; ``1000 / predict CPU ms`` is the bound on
uncached predictions per second per worker before HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

PAIRS = ("EURUSD", "USDJPY")  # the RF and LightGBM models of bench_serving's setup


def child(home: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pandas as pd
    from bench_serving import _timestamps

    from bqx.config import Settings
    from bqx.features import at_array
    from bqx.serving.service import PredictionService, _needed_columns

    svc = PredictionService(Settings(home=Path(home)), live=True)
    svc.start()
    out: dict[str, Any] = {}
    try:
        for pair in PAIRS:
            svc.predict(pair)  # model load, newest bar
            only = _needed_columns(svc, pair)
            panel = svc.bars.snapshot.panel  # type: ignore[union-attr]
            feat, pred = [], []
            for k, t in enumerate(_timestamps(Path(home), pair, 1400)[:-1]):
                # the second call finds the bar's data in the CPU caches: alternate the order
                for step in ("feat", "pred") if k % 2 == 0 else ("pred", "feat"):
                    c0 = time.process_time()
                    if step == "feat":
                        at_array(panel, pair, svc._closed_by(pd.Timestamp(t)), only=only)
                        feat.append((time.process_time() - c0) * 1e3)
                    else:
                        p = svc.predict(pair, t)
                        pred.append((time.process_time() - c0) * 1e3)
                        assert not p.feature_cache_hit
            out[pair] = {"features_cpu_ms": feat, "predict_cpu_ms": pred}
    finally:
        svc.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src")
    ap.add_argument("--home", default="/tmp/bqx-bench-serving")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.home)
        return
    if not a.old_src:
        ap.error("--old-src is required")
    new_src = str(Path(__file__).resolve().parents[1] / "src")
    srcs = {"old": a.old_src, "new": new_src}
    data: dict[str, dict[str, dict[str, list[float]]]] = {"old": {}, "new": {}}
    load = round(os.getloadavg()[0], 1)
    for r in range(a.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
            env.update({"PYTHONPATH": srcs[name], "OPENBLAS_NUM_THREADS": "1"})
            cmd = [sys.executable, __file__, "--child", "--home", a.home]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            for pair, d in got.items():
                for k, v in d.items():
                    data[name].setdefault(pair, {}).setdefault(k, []).extend(v)
            print(f"round {r} {name} done", file=sys.stderr)

    def q(x: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(x, 50)), 3),
            "p99_ms": round(float(np.percentile(x, 99)), 3),
        }

    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "load_avg_1m_at_start": load,
        "rounds": a.rounds,
        "old_src": a.old_src,
        "new_src": new_src,
    }
    for name, per in data.items():
        for pair, d in per.items():
            s = {k: q(v) for k, v in d.items()}
            s["requests"] = len(d["predict_cpu_ms"])
            s["bound_req_per_s"] = round(1000.0 / float(np.median(d["predict_cpu_ms"])), 1)
            out[f"{name}_{pair}"] = s
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
