"""Paper-trading replay speed through the live path, and its parity with the backtest.

Builds a throw-away project home (simulated bars of all 28 pairs, ridge models in production
for the first ``--pairs`` pairs), replays ``--hours`` hours through ``bqx.paper`` and prints
JSON: bars/s and decisions/s of the replay, and the parity figures of ``bqx paper compare``
(``trades_matched``, ``max_abs_pnl_diff``).

The replay runs ``--repeats`` times with the risk manager's sizing on and off, alternated in
the same process (the machine is shared: compare the two sides of one run), so the cost of
the per-decision risk check shows as a ratio; the time spent inside the check itself is
measured separately (wall and CPU).

    python benchmarks/bench_paper.py --pairs 28 --hours 1 --repeats 2 \
        --out benchmarks/results/paper.json
    python benchmarks/bench_paper.py --pairs 28 --hours 1 --repeats 1 --threshold 1e-6 \
        --out benchmarks/results/paper_many_orders.json    # an order on almost every bar
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=28)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--threshold", type=float, default=0.0001, help="signal threshold (lower = more orders)"
    )
    args = ap.parse_args()

    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.paper import PaperSession, compare_session, create_session
    from bqx.registry import Registry
    from bqx.training.train import train_frame
    from bqx.universe import PAIRS

    # time spent inside the risk check (wall, CPU) per session
    spent = {"wall": 0.0, "cpu": 0.0, "calls": 0}
    orig = PaperSession._size_by_risk

    def timed(self, svc, rows, ts):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), time.process_time()
        try:
            return orig(self, svc, rows, ts)
        finally:
            spent["wall"] += time.perf_counter() - w
            spent["cpu"] += time.process_time() - c
            spent["calls"] += 1

    PaperSession._size_by_risk = timed  # type: ignore[method-assign]

    pairs = list(PAIRS[: args.pairs])
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(home=Path(tmp) / "home")
        s.train.approval_rule = "always"
        s.signals.threshold = args.threshold
        s.ensure_home()
        t0 = time.perf_counter()
        bars = generate(days=args.days, pairs=None, seed=3, signal_strength=0.3).bars
        store = open_store(settings=s)
        store.upsert(bars)
        store.close()
        reg = Registry(s)
        for p in pairs:
            df = F.build(bars, p, with_target=True)
            r = train_frame(p, df, s, model="ridge", selection_rows=3000, n_jobs=1)
            reg.promote(p, reg.log_and_register(r), actor="bench", reason="bench")
        setup_s = time.perf_counter() - t0
        last = pd.Timestamp(bars["ts"].max())
        start = last - pd.Timedelta(hours=args.hours) + pd.Timedelta(minutes=1)
        for k in range(args.repeats):
            for risk in (False, True):
                name = f"bench-{'risk' if risk else 'norisk'}-{k}"
                create_session(s, name, pairs, start=start, end=last, risk=risk)
                sess = PaperSession(s, name)
                spent.update(wall=0.0, cpu=0.0, calls=0)
                load0 = os.getloadavg()[0]
                c0 = time.process_time()
                out = sess.run()
                cpu = time.process_time() - c0
                cmp = compare_session(sess)
                d = sess.state.read_decisions(pairs)
                mine = [isinstance(x, dict) and x.get("session") == name for x in d["extra"]]
                d = d[mine]
                n_capped = sum(
                    isinstance(x, dict)
                    and isinstance(x.get("risk"), dict)
                    and x["risk"].get("max_notional") is not None
                    for x in d["extra"]
                )
                n_held = int(d["signal_reason"].astype(str).str.startswith("risk_").sum())
                sess.close()
                runs.append(
                    {
                        "risk": risk,
                        "repeat": k,
                        "bars": out["bars"],
                        "decisions": out["decisions_written"],
                        "seconds": out["seconds"],
                        "cpu_seconds": cpu,
                        "bars_per_s": out["bars_per_s"],
                        "decisions_per_s": out["decisions_written"] / out["seconds"],
                        "risk_check_seconds": spent["wall"],
                        "risk_check_cpu_seconds": spent["cpu"],
                        "risk_check_bars": spent["calls"],
                        "decisions_capped": n_capped,
                        "decisions_held_by_risk": n_held,
                        "trades_matched": cmp["trades_matched"],
                        "paper_trades": cmp["paper_trades"],
                        "max_abs_pnl_diff": cmp["max_abs_pnl_diff"],
                        "identical": cmp["identical"],
                        "load_avg_1m_start": load0,
                    }
                )
                print(json.dumps(runs[-1]), flush=True)

    def med(risk: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["risk"] is risk)

    on, off = med(True, "bars_per_s"), med(False, "bars_per_s")
    res = {
        "benchmark": "paper_replay",
        "machine": f"{platform.machine()} {platform.node()} cpus={os.cpu_count()}",
        "date": time.strftime("%Y-%m-%d"),
        "load_avg_end": list(os.getloadavg()),
        "pairs": len(pairs),
        "hours": args.hours,
        "signal_threshold": args.threshold,
        "setup_seconds": round(setup_s, 1),
        "bars": runs[0]["bars"],
        "median_bars_per_s_risk": round(on, 2),
        "median_bars_per_s_no_risk": round(off, 2),
        "median_decisions_per_s_risk": round(med(True, "decisions_per_s"), 1),
        "median_decisions_per_s_no_risk": round(med(False, "decisions_per_s"), 1),
        "speed_ratio_risk_vs_no_risk": round(on / off, 3),
        "cpu_ratio_risk_vs_no_risk": round(med(True, "cpu_seconds") / med(False, "cpu_seconds"), 3),
        "median_risk_check_ms_per_bar": round(
            1e3 * med(True, "risk_check_seconds") / max(1, runs[1]["risk_check_bars"]), 1
        ),
        "median_risk_check_cpu_ms_per_bar": round(
            1e3 * med(True, "risk_check_cpu_seconds") / max(1, runs[1]["risk_check_bars"]), 1
        ),
        "risk_check_share_of_wall": round(
            med(True, "risk_check_seconds") / med(True, "seconds"), 3
        ),
        "decisions_capped": runs[1]["decisions_capped"],
        "decisions_held_by_risk": runs[1]["decisions_held_by_risk"],
        "trades_matched_risk": runs[1]["trades_matched"],
        "paper_trades_risk": runs[1]["paper_trades"],
        "max_abs_pnl_diff_risk": max(r["max_abs_pnl_diff"] for r in runs if r["risk"]),
        "trades_matched_no_risk": runs[0]["trades_matched"],
        "paper_trades_no_risk": runs[0]["paper_trades"],
        "max_abs_pnl_diff_no_risk": max(r["max_abs_pnl_diff"] for r in runs if not r["risk"]),
        "identical_all": all(r["identical"] for r in runs),
        "runs": runs,
    }
    text = json.dumps(res, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
