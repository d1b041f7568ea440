"""Old vs new code give the same uncached predictions bit for bit (issue 15 item 4).

    PYTHONPATH=src .venv/bin/python benchmarks/ab_predict_equal.py --old-src <main>/src \\
        [--home /tmp/bqx-bench-serving] [--bars 1000] [--out benchmarks/results/predict_ab_equal.json]

On the home of ``benchmarks/bench_serving.py`` (its setup must have run), one process per code
(``PYTHONPATH`` = that ``src``) runs a live :class:`~bqx.serving.service.PredictionService`
(decision logging off) on random bars of the in-memory window of each pair with a
production model, each bar once (uncached), and records ``at_array(..., only=<model
columns>)``, the full 809-column ``at_array`` on every 10th bar, and every field of the
prediction that does not depend on the clock (prediction, interval, signal, strength,
reason, threshold, feature hash) as exact hex floats. The two records must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAIRS = ("EURUSD", "USDJPY")


def _hex(xs: Any) -> list[str]:
    return [float(v).hex() for v in xs]


def child(home: str, n: int) -> None:
    import numpy as np
    import pandas as pd

    from bqx.config import Settings
    from bqx.features import at_array
    from bqx.serving.service import PredictionService, _needed_columns

    svc = PredictionService(Settings(home=Path(home)), live=True, log_decisions=False)
    svc.start()
    out: dict[str, Any] = {}
    try:
        for pair in PAIRS:
            svc.predict(pair)
            only = _needed_columns(svc, pair)
            assert svc.bars is not None and svc.bars.snapshot is not None
            panel = svc.bars.snapshot.panel
            j = panel.pairs.index(pair)
            rows = np.flatnonzero(np.isfinite(panel.close[:, j]))
            rng = np.random.default_rng(15)
            pick = np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))
            recs = []
            for k, p in enumerate(pick):
                t = pd.Timestamp(int(panel.ts[p]), tz="UTC")
                v, _ = at_array(panel, pair, t, only=only)
                rec: dict[str, Any] = {"t": t.isoformat(), "subset": _hex(v)}
                if k % 10 == 0:
                    rec["full"] = _hex(at_array(panel, pair, t)[0])
                close = t + pd.Timedelta(svc.settings.interval)
                try:
                    pr = svc.predict(pair, close)
                    rec["pred"] = [*_hex([pr.prediction, *pr.interval, pr.signal_strength,
                                          pr.threshold]),
                                   pr.signal, pr.signal_reason, pr.feature_hash,
                                   pr.timestamp.isoformat(), pr.feature_cache_hit]  # fmt: skip
                except Exception as e:  # stale / insufficient: the error must match too
                    rec["pred"] = [type(e).__name__, str(e)]
                recs.append(rec)
            out[pair] = recs
    finally:
        svc.close()
    print(json.dumps(out))


def run(src: str, home: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src}
    r = subprocess.run(
        [sys.executable, __file__, "--child", "--home", home, "--bars", str(n)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src", required=False)
    ap.add_argument("--home", default="/tmp/bqx-bench-serving")
    ap.add_argument("--bars", type=int, default=1000)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.home, a.bars)
        return
    new_src = str(Path(__file__).resolve().parents[1] / "src")
    old, new = run(a.old_src, a.home, a.bars), run(new_src, a.home, a.bars)
    res: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "old_src": a.old_src,
        "bars_per_pair": a.bars,
        "pairs": {},
    }
    ok = True
    for pair in PAIRS:
        o, nw = old[pair], new[pair]
        diff = {
            f: sum(1 for x, y in zip(o, nw, strict=True) if x.get(f) != y.get(f))
            for f in ("t", "subset", "full", "pred")
        }
        res["pairs"][pair] = {
            "bars": len(o),
            "full_checked": sum(1 for x in o if "full" in x),
            "predictions_answered": sum(1 for x in o if len(x["pred"]) > 2),
            "differing": diff,
        }
        ok &= len(o) == len(nw) and not any(diff.values())
    res["identical"] = ok
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
