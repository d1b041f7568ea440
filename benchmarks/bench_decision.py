"""Decision-layer benchmark (issue 14 "Must show"). Prints JSON.

    .venv/bin/python benchmarks/bench_decision.py [--days 10] [--quick]

* regime recovery: the simulator's true volatility regime vs the filtered HMM state (by
  volatility rank) on the test segment (last 30 %) of pairs, fitted on the first 70 %;
* regime cost: one ``RegimeModel.at`` (cache miss) and in-process predict p50/p99 with the
  regime on vs off, alternating blocks on the same service, every request a different bar;
* forensics: SHAP ms per decision for the default RF and LightGBM; predict p50/p99 with a
  ``bqx forensics worker`` process running vs stopped (SIGSTOP/SIGCONT of that process,
  alternating blocks); the worker's explanations/s vs the 28 pairs x 1 decision per bar;
* risk: ``RiskManager.check`` p50/p95 with 28 open positions (portfolio read from SQLite,
  market data cached) and the VaR computation time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v) * 1000.0, q))


def regime_recovery(days: float, pairs: list[str], restarts: int) -> dict[str, Any]:
    from bqx.data.simulator import REGIME_NAMES, generate
    from bqx.decision.regime import fit_regime

    sim = generate(days=days, pairs=pairs, seed=7)
    truth = sim.regimes
    out: dict[str, Any] = {"days": days, "pairs": {}}
    accs = []
    for pair, g in sim.bars.groupby("pair", sort=True):
        c = g["close"].to_numpy()
        ts = pd.DatetimeIndex(g["ts"]).asi8
        tr = truth.reindex(pd.DatetimeIndex(g["ts"])).to_numpy()
        n = len(c)
        ntr = int(n * 0.7)
        m = fit_regime(c[:ntr], ts[:ntr], restarts=restarts)
        P = m.filter(c, ts)
        vr = np.asarray(m.vol_rank)[np.argmax(P, axis=1)]
        test = np.arange(n) >= ntr
        acc = float(np.mean(vr[test] == tr[test]))
        counts = np.bincount(tr[test].astype(int), minlength=3)
        conf = pd.crosstab(
            pd.Series(tr[test], name="true").map(dict(enumerate(REGIME_NAMES))),
            pd.Series(vr[test], name="filtered_vol_rank"),
        )
        accs.append(acc)
        out["pairs"][str(pair)] = {
            "accuracy": acc,
            "majority_class_share": float(counts.max() / counts.sum()),
            "true_counts": counts.tolist(),
            "confusion": conf.to_dict(),
            "fit_seconds": m.fit_info["fit_seconds"],
        }
    out["accuracy_mean"] = float(np.mean(accs))
    out["chance_uniform"] = 1 / 3
    return out


def setup_home(home: Path, days: float) -> Any:
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.decision.regime import fit_for_artifact
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.ensure_home()
    bars = generate(days=days, seed=5, signal_strength=0.1).bars
    store = open_store(settings=s)
    store.upsert(bars)
    reg = Registry(s)
    shap_ms: dict[str, Any] = {}
    arts = {}
    for pair, model in (("EURUSD", "rf"), ("USDJPY", "lightgbm")):
        df = F.build(bars, pair, with_target=True)
        r = train_frame(pair, df, s, model=model, n_jobs=2)
        fit_for_artifact(r.artifact, s, store)
        v = reg.log_and_register(r)
        reg.promote(pair, v, actor="bench", reason="benchmark")
        arts[model] = (r.artifact, df.drop(columns=["target"]).to_numpy(np.float64))
    store.close()
    from bqx.decision.forensics import shap_values

    for model, (art, X) in arts.items():
        rows = X[-200:]
        shap_values(art, rows[0])  # build the explainer
        t = []
        for x in rows[1:61]:
            t0 = time.perf_counter()
            shap_values(art, x)
            t.append(time.perf_counter() - t0)
        shap_ms[model] = {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "n": len(t)}
    return s, shap_ms


def predict_blocks(svc: Any, pair: str, stamps: list[pd.Timestamp], toggle: Any, blocks: int):
    """Alternate A/B blocks; every request a different bar (feature cache misses)."""
    res: dict[str, list[float]] = {"A": [], "B": []}
    k = 0
    for b in range(blocks):
        for arm in ("A", "B") if b % 2 == 0 else ("B", "A"):
            toggle(arm)
            for _ in range(len(stamps) // (2 * blocks)):
                ts = stamps[k % len(stamps)]
                k += 1
                t0 = time.perf_counter()
                svc.predict(pair, ts, source="bench")
                res[arm].append(time.perf_counter() - t0)
    return {a: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v)} for a, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=10)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    t0 = time.perf_counter()
    out["regime_recovery"] = regime_recovery(
        20 if a.quick else 40, ["EURUSD", "GBPJPY", "AUDNZD"], 3
    )
    out["regime_recovery"]["seconds"] = time.perf_counter() - t0

    home = Path(tempfile.mkdtemp(prefix="bqx-bench-decision-"))
    s, shap_ms = setup_home(home, a.days)
    out["shap_ms_per_decision"] = shap_ms

    from bqx.serving.service import PredictionService

    svc = PredictionService(s, live=False)
    art = svc.model("EURUSD")
    bars = svc.store.read("EURUSD")
    stamps = list(pd.DatetimeIndex(bars["ts"])[-600:])
    # one RegimeModel.at (a cache miss)
    from bqx.features.panel import Panel

    panel = Panel.from_bars(bars.tail(400))
    t = []
    for i in range(200):
        t0 = time.perf_counter()
        art.regime.at(panel.close[: 300 + i % 100, 0], panel.ts[: 300 + i % 100])
        t.append(time.perf_counter() - t0)
    out["regime_at_ms"] = {"p50": pct(t, 50), "p99": pct(t, 99)}

    def regime_toggle(arm: str) -> None:
        svc.regime.settings.enabled = arm == "A"

    out["predict_regime_on_A_vs_off_B"] = predict_blocks(svc, "EURUSD", stamps, regime_toggle, 6)
    svc.regime.settings.enabled = True

    # forensics worker running vs stopped (our own process, SIGSTOP/SIGCONT)
    env = {**os.environ, "BQX_HOME": str(home)}
    w = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from bqx.cli import main; main()",
            "forensics",
            "worker",
            "--poll",
            "0.2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)

        def worker_toggle(arm: str) -> None:
            os.kill(w.pid, signal.SIGCONT if arm == "A" else signal.SIGSTOP)

        stamps2 = list(pd.DatetimeIndex(bars["ts"])[-1200:-600])
        out["predict_worker_running_A_vs_stopped_B"] = predict_blocks(
            svc, "EURUSD", stamps2, worker_toggle, 6
        )
        os.kill(w.pid, signal.SIGCONT)
    finally:
        os.kill(w.pid, signal.SIGCONT)
        w.terminate()
        w.wait(30)
    # worker throughput: a fresh batch of decisions explained by run_once
    from bqx.decision.forensics import ForensicsWorker

    for ts in stamps[:100]:
        svc.predict("EURUSD", ts, source="bench")
        svc.predict("USDJPY", ts, source="bench")
    fw = ForensicsWorker(s, state=svc.state)
    fw.run_once()  # warm (model load)
    for ts in stamps[100:200]:
        svc.predict("EURUSD", ts, source="bench")
        svc.predict("USDJPY", ts, source="bench")
    r = fw.run_once()
    bar_s = pd.Timedelta(s.interval).total_seconds()
    out["worker"] = {**r, "needed_per_second_28_pairs": 28 / bar_s}

    # risk check with 28 positions
    from bqx.decision.risk import RiskManager
    from bqx.universe import PAIRS

    rm = RiskManager(s, svc.state, svc.store, ttl_s=3600)
    t0 = time.perf_counter()
    md = rm.market()
    out["risk_market_data_load_ms"] = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(0)
    svc.state.update_portfolio(
        cash=1e6,
        positions=[
            {"pair": p, "quantity": float(rng.integers(-20_000, 20_000)), "avg_price": md.prices[p]}
            for p in PAIRS
        ],
    )
    eng = rm.engine()
    t = []
    for _ in range(200):
        t0 = time.perf_counter()
        eng.var(eng.e)
        t.append(time.perf_counter() - t0)
    out["var_ms"] = {"p50": pct(t, 50), "p95": pct(t, 95), "scenarios": len(md.returns)}
    res: dict[str, list[float]] = {"approved": [], "rejected": []}
    for i in range(300):
        pair = PAIRS[i % 28]
        q = 1000 if i % 2 == 0 else 5_000_000
        t0 = time.perf_counter()
        c = rm.check({"pair": pair, "side": "BUY", "quantity": q})
        res["approved" if c["approved"] else "rejected"].append(time.perf_counter() - t0)
    out["risk_check_ms_28_positions"] = {
        k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)} for k, v in res.items() if v
    }
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
