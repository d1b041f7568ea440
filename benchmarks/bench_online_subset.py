"""Online features for one model (issue 15 item 4): ``at_array`` computing all 809
candidates vs only the columns a 70-feature model reads (``only=``), on the same random bars.
Prints JSON (ms per call: p50, p99, wall and CPU time; and the ratio).

    .venv/bin/python benchmarks/bench_online_subset.py [--calls 300] [--days 9]
    .venv/bin/python benchmarks/bench_online_subset.py --old-src /path/to/main/src \
        [--out benchmarks/results/online_subset.json]

With ``--old-src`` the code under test (this checkout's ``src``, or ``--new-src``) and the
code in ``--old-src`` (e.g. main's) run in two persistent worker processes, each with its
own copy of the data; the parent alternates them call by call (old full, old subset, new
full, new subset on the same bar, order swapped every other bar), so load on the shared
machine hits both alike. Each worker times its own calls (``perf_counter`` for wall time,
``process_time`` for CPU time, which preemption by other processes does not inflate).

Data: the built-in simulator, 28 pairs, M1, ``--days`` calendar days, as a Panel in memory
(the service's bar cache). The column list is the selection of a real ``bqx train`` run (ridge) on
the simulator (EURUSD, SPEC selection 0.95 / 70) plus its interval scale feature.
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

MODEL_COLUMNS = [
    "macd_signal",
    "vwap_dev_60",
    "w60_avg",
    "w60_max",
    "bb_pctb_50",
    "ema_cross_10_50",
    "w75_avg",
    "momentum_alignment",
    "ema_ratio_50",
    "agg_mean",
    "reg_w150_quad_b",
    "sma_ratio_100",
    "macd",
    "dpo_20",
    "w30_ret",
    "w45_ret",
    "ema_ratio_100",
    "rsi_28",
    "w60_ret",
    "plus_di_14",
    "w45_max",
    "reg_w90_quad_b",
    "donchian_pos_55",
    "agg_max",
    "rsi_14",
    "bb_pctb_20",
    "w30_max",
    "w75_max",
    "trix_15",
    "roc_20",
    "reg_w390_lin_dev",
    "reg_w90_slope",
    "reg_w60_slope",
    "kijun_dev",
    "w45_avg",
    "fib_pos_120",
    "fib_d618_120",
    "agg_slope",
    "willr_28",
    "w75_ret",
    "trend_strength",
    "reg_w240_curv",
    "bqx_vol_adj_60",
    "ema_ratio_20",
    "fib_zone_120",
    "vol_signed_60",
    "ema_ratio_10",
    "w30_avg",
    "reg_w240_quad_r2_lag240",
    "fib_d382_120",
    "volatility_regime",
    "w15_ret",
    "reg_w390_r2_lag120",
    "aroon_up_25",
    "reg_w390_r2_lag180",
    "reg_w150_curv",
    "corr_quote_240",
    "ema_cross_10_50_lag60",
    "agg_min",
    "rollover_phase",
    "reg_w630_slope_lag180",
    "sma_ratio_200",
    "reg_slope_diff",
    "elder_bull_13",
    "reg_w240_r2_lag240",
    "csi_eur",
    "keltner_pos",
    "reg_w390_quad_r2_lag240",
    "reg_w240_lin_dev",
    "agg_std",
    "rvol_60",
]


def _q(x: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(x, 50)), 3),
        "p99_ms": round(float(np.percentile(x, 99)), 3),
    }


def worker(days: int, pair: str) -> None:
    """Serve timing requests on stdin: a bar index -> one JSON line of four timings (ms)."""
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.features.panel import Panel

    panel = Panel.from_bars(generate(days=days, seed=5, start="2024-03-04").bars)
    ts = panel.timestamps()
    only = tuple(MODEL_COLUMNS)
    F.at_array(panel, pair, ts[-1], only=only)  # warm the plan caches
    F.at_array(panel, pair, ts[-1])
    print(json.dumps({"ready": len(ts), "lookback": F.lookback()}), flush=True)
    for line in sys.stdin:
        i = int(line)
        out = []
        for o in (None, only):
            w0, c0 = time.perf_counter(), time.process_time()
            F.at_array(panel, pair, ts[i], only=o)
            out += [(time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3]
        print(json.dumps(out), flush=True)


def side_by_side(a: argparse.Namespace) -> dict[str, Any]:
    """Old and new code in two worker processes, alternated call by call."""
    here = Path(__file__).resolve()
    new_src = a.new_src or str(here.parents[1] / "src")
    procs = {}
    for name, src in (("old", a.old_src), ("new", new_src)):
        env = {**os.environ, "PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, str(here), "--worker", "--days", str(a.days), "--pair", a.pair]
        procs[name] = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    info = {k: json.loads(p.stdout.readline()) for k, p in procs.items()}  # type: ignore[union-attr]
    n, lb = info["new"]["ready"], info["new"]["lookback"]
    rng = np.random.default_rng(0)
    picks = rng.integers(lb, n, a.calls)
    res: dict[str, dict[str, list[float]]] = {
        k: {"full_wall": [], "full_cpu": [], "sub_wall": [], "sub_cpu": []} for k in procs
    }
    for c, i in enumerate(picks):
        order = ("old", "new") if c % 2 == 0 else ("new", "old")
        for k in order:
            p = procs[k]
            p.stdin.write(f"{int(i)}\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
            fw, fc, sw, sc = json.loads(p.stdout.readline())  # type: ignore[union-attr]
            for key, v in zip(res[k], (fw, fc, sw, sc), strict=True):
                res[k][key].append(v)
    for p in procs.values():
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(timeout=30)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "load_avg_1m_at_start": round(os.getloadavg()[0], 1),
        "calls": a.calls,
        "days": a.days,
        "pair": a.pair,
        "columns": len(MODEL_COLUMNS),
        "old_src": a.old_src,
        "new_src": new_src,
    }
    for k in procs:
        out[k] = {key: _q(v) for key, v in res[k].items()}
    out["ratio_p50"] = {
        key: round(float(np.median(res["old"][key]) / np.median(res["new"][key])), 2)
        for key in res["new"]
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--days", type=int, default=9)
    ap.add_argument("--pair", default="EURUSD")
    ap.add_argument("--old-src", help="another checkout's src to compare against (A/B)")
    ap.add_argument("--new-src", help="the src under test (default: this checkout's)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.days, a.pair)
        return
    if a.old_src:
        text = json.dumps(side_by_side(a), indent=1)
        print(text)
        if a.out:
            Path(a.out).write_text(text + "\n")
        return
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.features.panel import Panel

    panel = Panel.from_bars(generate(days=a.days, seed=5, start="2024-03-04").bars)
    ts = panel.timestamps()
    rng = np.random.default_rng(0)
    picks = rng.integers(F.lookback(), len(ts), a.calls)
    only = tuple(MODEL_COLUMNS)
    F.at_array(panel, a.pair, ts[picks[0]], only=only)  # warm the plan caches
    full, sub = [], []
    for i in picks:
        t0 = time.perf_counter()
        F.at_array(panel, a.pair, ts[i])
        t1 = time.perf_counter()
        F.at_array(panel, a.pair, ts[i], only=only)
        t2 = time.perf_counter()
        full.append((t1 - t0) * 1e3)
        sub.append((t2 - t1) * 1e3)

    print(
        json.dumps(
            {
                "calls": a.calls,
                "columns": len(only),
                "full_809": _q(full),
                "subset": _q(sub),
                "ratio_p50": round(float(np.median(full) / np.median(sub)), 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
