"""Paper-trading replay speed through the live path, and its parity with the backtest.

Builds a throw-away project home (simulated bars of all 28 pairs, ridge models in production
for the first ``--pairs`` pairs), replays ``--hours`` hours through ``bqx.paper`` and prints
JSON: bars/s and decisions/s of the replay, and the parity figures of ``bqx paper compare``
(``trades_matched``, ``max_abs_pnl_diff``).

    python benchmarks/bench_paper.py --pairs 28 --hours 2
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=28)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--days", type=int, default=6)
    args = ap.parse_args()

    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.paper import PaperSession, compare_session, create_session
    from bqx.registry import Registry
    from bqx.training.train import train_frame
    from bqx.universe import PAIRS

    pairs = list(PAIRS[: args.pairs])
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(home=Path(tmp) / "home")
        s.train.approval_rule = "always"
        s.signals.threshold = 0.0001
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
        create_session(s, "bench", pairs, start=start, end=last)
        sess = PaperSession(s, "bench")
        out = sess.run()
        cmp = compare_session(sess)
        sess.close()
    print(
        json.dumps(
            {
                "benchmark": "paper_replay",
                "machine": f"{platform.machine()} {platform.node()}",
                "date": time.strftime("%Y-%m-%d"),
                "pairs": len(pairs),
                "bars": out["bars"],
                "decisions": out["decisions_written"],
                "seconds": round(out["seconds"], 2),
                "bars_per_s": round(out["bars_per_s"], 2),
                "decisions_per_s": round(out["decisions_written"] / out["seconds"], 1),
                "trades_matched": cmp["trades_matched"],
                "paper_trades": cmp["paper_trades"],
                "max_abs_pnl_diff": cmp["max_abs_pnl_diff"],
                "identical": cmp["identical"],
                "setup_seconds": round(setup_s, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
