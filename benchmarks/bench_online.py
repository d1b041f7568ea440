"""Online learning on the simulator: static vs online on a drifting market, and a
random-walk control (issue 17 item 4).

One run per (market, model[, LightGBM method]): a throw-away project home, bars of
EURUSD/GBPUSD/USDJPY (M1) arriving in the bar store step by step (the store never holds
bars after the current time, so nothing the update or its stability check reads is from the
future). v1 is trained on the first ``--train-days`` days and promoted; it stays the
*static* arm. Every ``--step-days`` trading days the *online* arm runs the real path on the
latest matured bars — :func:`bqx.online.job.build_update` then
:func:`bqx.online.job.submit_update` (registration with parent and data window, stability
check against the parent) — and an accepted update is promoted at once (standing in for a
rollout that completes: the benchmark has no live traffic for shadow/canary). Both arms
forecast the next step's bars (out of sample, the served shrunk forecast) and are scored
per calendar month on matured targets: R² with 95 % HAC intervals (:mod:`bqx.stats`) and a
paired Diebold-Mariano test of online vs static on squared errors.

Drifting market: ``generate(..., signal_strength=S, signal_cycle_days=P,
signal_cycle_low=L)``: the momentum coefficient cycles from 1 (start) to L (P/2) and back;
default L = 0, the signal fading out and back in (a strong signal: with L = -1 the
simulator needs a weak one, which these models do not learn from weeks of data). Control: a
random walk.

    python benchmarks/bench_online.py            # ridge + LightGBM boost/refit, both markets
    python benchmarks/bench_online.py --quick    # ridge only
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PAIR = "EURUSD"
GEN_PAIRS = ["EURUSD", "GBPUSD", "USDJPY"]


def run(args: argparse.Namespace, *, market: str, model: str, method: str | None) -> dict:
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.online.job import build_update, submit_update
    from bqx.ops.operator import Operator
    from bqx.registry import Registry
    from bqx.stats import diebold_mariano, r2_estimate
    from bqx.training.train import train_frame

    drifting = market == "drifting"
    sim = generate(
        days=args.days, pairs=GEN_PAIRS, seed=args.seed, start="2024-01-01",
        signal_strength=args.strength if drifting else 0.0,
        signal_cycle_days=args.cycle_days if drifting else None,
        signal_cycle_low=args.cycle_low,
    )  # fmt: skip
    bars = sim.bars
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(home=Path(tmp) / "home")
        s.train.model = model  # type: ignore[assignment]
        s.train.approval_rule = "always"
        s.train.selection_rows = 5000
        s.online.window_bars = args.window
        s.online.calibration_bars = args.calibration
        s.online.check_bars = args.check
        s.online.half_life_bars = args.half_life
        if method:
            s.online.lgbm_method = method  # type: ignore[assignment]
        s.ensure_home()
        t0 = pd.Timestamp(bars["ts"].min())
        t_train = t0 + pd.Timedelta(days=args.train_days)
        store = open_store(settings=s)
        store.upsert(bars[bars["ts"] <= t_train])
        reg = Registry(s)
        df = F.build(bars[bars["ts"] <= t_train], PAIR, with_target=True, horizon=s.horizon)
        res = train_frame(PAIR, df, s, model=model, n_jobs=1)
        v1 = reg.log_and_register(res)
        reg.promote(PAIR, v1, actor="bench", reason="static arm")
        static = reg.load(PAIR, version=v1)
        full = F.build(bars, PAIR, with_target=True, horizon=s.horizon)  # scoring only
        ctx = Operator(s, registry=reg, store=store)
        idx = full.index[full.index > t_train]
        step = int(args.step_days * 1440)
        bounds = list(range(0, len(idx), step))
        rows = []
        updates = []
        cur = static
        for k, b0 in enumerate(bounds):
            now = idx[b0 - 1] if b0 > 0 else t_train
            seg = idx[b0 : b0 + step]
            if b0 > 0:
                store.upsert(bars[(bars["ts"] > idx[bounds[k - 1] - 1] if k > 1 else
                                   bars["ts"] > t_train) & (bars["ts"] <= now)])  # fmt: skip
                u: dict[str, Any] = {"at": now.isoformat()}
                tb = time.perf_counter()
                try:
                    cand = build_update(ctx, PAIR, as_of=now)
                    u["build_s"] = time.perf_counter() - tb
                    ts_ = time.perf_counter()
                    out = submit_update(ctx, cand)
                    u["submit_s"] = time.perf_counter() - ts_
                    u.update(accepted=out["accepted"], version=out["version"],
                             unchanged=bool(out.get("unchanged")),
                             p=(out.get("stability") or {}).get("p_candidate_worse"),
                             beta=cand.info.get("beta"), parent_beta=cand.info.get("parent_beta"))  # fmt: skip
                    if out["accepted"]:
                        reg.promote(PAIR, out["version"], actor="bench", reason="rollout done")
                        cur = reg.load(PAIR, version=out["version"])
                except Exception as e:  # too few rows early on, etc.: recorded, not hidden
                    u["error"] = str(e)[:200]
                updates.append(u)
                if ctx.state.online_state(PAIR)["paused"]:
                    ctx.state.set_online_enabled(PAIR, True)  # keep measuring: count pauses
                    u["paused"] = True
            X = full.loc[seg]
            rows.append(pd.DataFrame({
                "y": X["target"].to_numpy(float),
                "static": static.predict_frame(X),
                "online": cur.predict_frame(X),
            }, index=seg))  # fmt: skip
        store.close()
    fc = pd.concat(rows)
    fc = fc[np.isfinite(fc["y"])]
    h = s.horizon
    months = []
    for m, g in fc.groupby(fc.index.strftime("%Y-%m")):
        y = g["y"].to_numpy()
        rs, ro = (
            r2_estimate(y, g["static"].to_numpy(), h),
            r2_estimate(y, g["online"].to_numpy(), h),
        )
        dm = diebold_mariano((y - g["online"]) ** 2, (y - g["static"]) ** 2, horizon=h)
        months.append({"month": m, "n": len(g), "r2_static": rs.as_dict(),
                       "r2_online": ro.as_dict(), "p_online_worse": dm.p_a_worse,
                       "p_online_better": 1 - dm.p_a_worse})  # fmt: skip
    late = fc[fc.index >= t0 + pd.Timedelta(days=args.late_from_days)]
    y = late["y"].to_numpy()
    dm = diebold_mariano((y - late["online"]) ** 2, (y - late["static"]) ** 2, horizon=h)
    ok = [u for u in updates if "accepted" in u]
    return {
        "market": market, "model": model, "method": method or ("ridge_rls" if model == "ridge"
                                                               else None),
        "oracle_r2": sim.oracle_r2.get(PAIR),
        "months": months,
        "late": {"from": (t0 + pd.Timedelta(days=args.late_from_days)).isoformat(),
                 "n": len(late),
                 "r2_static": r2_estimate(y, late["static"].to_numpy(), h).as_dict(),
                 "r2_online": r2_estimate(y, late["online"].to_numpy(), h).as_dict(),
                 "p_online_worse": dm.p_a_worse, "p_online_better": 1 - dm.p_a_worse},
        "updates": len(updates), "accepted": sum(bool(u["accepted"]) for u in ok),
        "rejected": sum(not u["accepted"] and not u["unchanged"] for u in ok),
        "unchanged": sum(bool(u["unchanged"]) for u in ok),
        "errors": [u["error"] for u in updates if "error" in u],
        "pauses": sum(bool(u.get("paused")) for u in updates),
        "build_s_median": float(np.median([u["build_s"] for u in ok])) if ok else None,
        "submit_s_median": (  # registration + stability check (registered updates only)
            float(np.median([u["submit_s"] for u in ok if not u["unchanged"]]))
            if any(not u["unchanged"] for u in ok)
            else None
        ),
        "update_log": updates,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=126)
    ap.add_argument("--train-days", type=float, default=21)
    ap.add_argument("--step-days", type=float, default=4, help="trading days between updates")
    ap.add_argument("--cycle-days", type=float, default=112)
    ap.add_argument("--late-from-days", type=float, default=28)
    ap.add_argument("--strength", type=float, default=0.3)
    ap.add_argument("--cycle-low", type=float, default=0.0, help="coefficient at mid-cycle")
    ap.add_argument("--window", type=int, default=20000)
    ap.add_argument("--calibration", type=int, default=6000)
    ap.add_argument("--check", type=int, default=3000)
    ap.add_argument("--half-life", type=float, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="ridge only")
    ap.add_argument("--models", default="ridge,lightgbm")
    ap.add_argument("--out", default="benchmarks/results/online.json")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    import os

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    combos: list[tuple[str, str | None]] = []
    if "ridge" in args.models:
        combos.append(("ridge", None))
    if "lightgbm" in args.models and not args.quick:
        combos += [("lightgbm", "boost"), ("lightgbm", "refit")]
    t = time.perf_counter()
    runs = []
    for market in ("drifting", "random_walk"):
        for model, method in combos:
            if market == "random_walk" and model != "ridge" and method != "boost":
                continue  # the control: ridge and the default LightGBM method
            t1 = time.perf_counter()
            r = run(args, market=market, model=model, method=method)
            r["seconds"] = time.perf_counter() - t1
            runs.append(r)
            la = r["late"]
            print(f"{market:<11} {model:<8} {r['method'] or '':<10} late R² static "
                  f"{la['r2_static']['value']:+.4f} online {la['r2_online']['value']:+.4f} "
                  f"(p online better {la['p_online_better']:.3g}); updates {r['updates']}, "
                  f"accepted {r['accepted']}, rejected {r['rejected']}, "
                  f"unchanged {r['unchanged']}; "
                  f"{r['seconds']:.0f} s", flush=True)  # fmt: skip
    out = {
        "benchmark": "online",
        "date": pd.Timestamp.now(tz="UTC").isoformat(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "args": vars(args),
        "seconds": time.perf_counter() - t,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
