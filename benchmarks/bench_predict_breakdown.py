"""Where an uncached prediction's CPU goes, piece by piece (issue 15 item 4).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_predict_breakdown.py \\
        [--home /tmp/bqx-bench-serving] [--bars 700] [--out benchmarks/results/predict_breakdown.json]

In-process on the home of ``benchmarks/bench_serving.py`` (its setup must have run): a live
:class:`~bqx.serving.service.PredictionService` (decision log and input capture on, as in
``bqx serve``), for the RF (EURUSD) and the LightGBM (USDJPY) version, on distinct bars of the
in-memory day. Per bar, CPU time (``process_time``) of each piece of the uncached path on that
bar: each feature family of the version's online plan, the whole ``at_array(only=...)``,
the model (``predict_vector``), interval, validity check, signal (``decide``), feature hash;
medians in ms. Then whole predictions on fresh bars, each once: ``predict(log=False)`` and
``predict()`` (with the decision-log and capture hand-offs; their writer threads are
charged by ``process_time`` too, so this is total CPU per prediction: loop CPU / bars).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAIRS = ("EURUSD", "USDJPY")


def _ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1e3, 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/bqx-bench-serving")
    ap.add_argument("--bars", type=int, default=700)
    ap.add_argument("--out")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pandas as pd
    from bench_serving import _timestamps

    from bqx.config import Settings
    from bqx.features import pipeline as P
    from bqx.features.context import Ctx
    from bqx.serving.service import PredictionService, _needed_columns, feature_hash
    from bqx.signals import decide
    from bqx.training.validity import missing_features

    pt = time.process_time
    home = Path(a.home)
    svc = PredictionService(Settings(home=home), live=True)
    svc.start()
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "bars": a.bars,
        "pairs": {},
    }
    try:
        for pair in PAIRS:
            svc.predict(pair)
            only = _needed_columns(svc, pair)
            assert only is not None
            art = svc.model(pair)
            panel = svc.bars.snapshot.panel  # type: ignore[union-attr]
            ts = _timestamps(home, pair, 2 * a.bars + 1)[:-1]
            piece_bars, whole_bars = ts[: a.bars], ts[a.bars :]
            plan = P._subset_plan(tuple(only))
            t: dict[str, list[float]] = {}

            def add(k: str, v: float, _t: dict[str, list[float]] = t) -> None:
                _t.setdefault(k, []).append(v)

            for x in piece_bars:
                asof = svc._closed_by(pd.Timestamp(x))
                p = panel.row_at_or_before(asof, pair)
                for fam, need, rel, idx, _r, _c, _o in plan:
                    c0 = pt()
                    q0 = max(0, p - need)
                    if hasattr(Ctx, "window"):  # the context at_array builds (since predfast2)
                        ctx = Ctx.window(panel, pair, panel.col(pair), q0, p + 1)
                    else:
                        ctx = Ctx(panel.slice_rows(q0, p + 1), pair)
                    P._eval_family(fam, ctx, (p - q0) - rel, idx, online=True)
                    add(f"family {fam.name}", pt() - c0)
                c0 = pt()
                v = P._at_subset(panel, pair, p, plan)
                add("at_array (all families)", pt() - c0)
                c0 = pt()
                yhat = art.predict_vector(v)
                add("model predict_vector", pt() - c0)
                c0 = pt()
                lo, hi = art.interval(yhat, v)
                add("interval", pt() - c0)
                c0 = pt()
                missing_features(art, v, svc.settings.serve.min_valid_features)
                add("validity check", pt() - c0)
                c0 = pt()
                decide(yhat, pair=pair, ts=asof, interval=(lo, hi), settings=svc.settings.signals)
                add("signal (decide)", pt() - c0)
                c0 = pt()
                feature_hash(v)
                add("feature hash", pt() - c0)
            res: dict[str, Any] = {"model": art.model, "features": len(art.features)}
            res["pieces_cpu_ms_p50"] = {k: _ms(v) for k, v in t.items()}
            half = len(whole_bars) // 2
            for name, bars, log in (("predict_nolog", whole_bars[:half], False),
                                    ("predict", whole_bars[half:], True)):  # fmt: skip
                c0, w0 = pt(), time.perf_counter()
                for x in bars:
                    r = svc.predict(pair, x, log=log)
                    assert not r.feature_cache_hit
                if log:
                    svc._writer.flush()
                    if svc._capture is not None:
                        svc._capture.writer.flush()
                res[f"{name}_cpu_ms_mean"] = round((pt() - c0) * 1e3 / len(bars), 4)
                res[f"{name}_wall_ms_mean"] = round((time.perf_counter() - w0) * 1e3 / len(bars), 4)
            out["pairs"][pair] = res
    finally:
        svc.close()
    out["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
