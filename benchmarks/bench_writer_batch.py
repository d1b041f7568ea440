"""CPU of one background-writer transaction, old vs new code (issue 15 item 4, srvcpu).
Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_writer_batch.py --old-src OLD/src \\
        [--batches 300] [--rounds 2] [--out srvcpu_writer_batch.json]

Each code runs in its own process (``PYTHONPATH=<its src>``) on its own copy of a fresh
SQLite state DB, and times (``time.thread_time``) what each writer thread does per batch:

* ``decisions_4``: ``StateDB.log_decisions(rows, if_absent=True)`` of 4 rows that went
  through ``_prepare_decision`` (what ``DecisionLogWriter.submit`` queues), the batch size
  the writer sees at one uncached request per ~2.5 ms with its 10 ms linger;
* ``captures_35``: ``CaptureWriter._write`` of 35 rows as ``ServiceCapture.submit`` hands
  them (70 names, raw values: packing included), the batch at its 100 ms wake-up.

Rounds alternate which code goes first; medians over batches, then over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def worker(batches: int) -> None:
    import uuid
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from bqx.state import StateDB
    from bqx.state.captures import CaptureWriter
    from bqx.state.decisions import _prepare_decision

    tmp = tempfile.mkdtemp(prefix="bqx-writer-batch-")
    s = StateDB(f"sqlite:///{tmp}/state.db")
    names = [f"f{i}" for i in range(70)]
    rng = np.random.default_rng(1)
    asof = pd.Timestamp("2024-01-02 10:00", tz="UTC")

    def decision() -> dict[str, Any]:
        return _prepare_decision({
            "decision_id": str(uuid.uuid4()), "request_time": datetime.now(UTC),
            "pair": "EURUSD", "asof_ts": asof.to_pydatetime(), "horizon": 12,
            "prediction": 1.2e-5, "interval_lo": -3.1e-4, "interval_hi": 3.3e-4,
            "confidence_level": 0.9, "signal": "HOLD", "signal_strength": 0.0,
            "signal_reason": "inside the interval", "model_name": "bqx-EURUSD",
            "model_version": "3", "latency_ms": 2.5, "feature_hash": "ab" * 16,
            "key_id": "k1", "extra": {"source": "api", "model": "rf", "requested_ts": None,
                                      "arm": "production", "rollout_id": None, "regime": None},
        })  # fmt: skip

    cw = CaptureWriter(s)

    def capture() -> dict[str, Any]:
        return {"decision_id": str(uuid.uuid4()), "pair": "EURUSD", "asof_ts": asof,
                "model_version": "3", "names": names, "values": rng.normal(size=70)}  # fmt: skip

    out: dict[str, Any] = {}
    for label, n, make, write in (
        ("decisions_4", 4, decision, lambda rows: s.log_decisions(rows, if_absent=True)),
        ("captures_35", 35, capture, cw._write),
    ):
        ts = []
        for _ in range(batches):
            rows = [make() for _ in range(n)]
            c0 = time.thread_time()
            write(rows)
            ts.append(time.thread_time() - c0)
        out[label] = {
            "rows": n,
            "batches": batches,
            "median_ms_per_batch": round(statistics.median(ts) * 1e3, 4),
            "mean_ms_per_batch": round(statistics.mean(ts) * 1e3, 4),
        }
    assert cw.dropped == 0 and cw.written == 35 * batches, cw.status()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src")
    ap.add_argument("--new-src")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.batches)
        return
    if not a.old_src:
        ap.error("--old-src is required")
    sys.path.insert(0, str(HERE))
    from _common import save_result

    t0, c0 = time.perf_counter(), time.process_time()
    srcs = {"old": a.old_src, "new": a.new_src or str(HERE.parent / "src")}
    rounds = []
    for r in range(a.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        got: dict[str, Any] = {"load_avg_1m_before": round(os.getloadavg()[0], 2)}
        for name in order:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
            env.update({"PYTHONPATH": srcs[name], "OPENBLAS_NUM_THREADS": "1"})
            cmd = [sys.executable, __file__, "--worker", "--batches", str(a.batches)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got[name] = json.loads(p.stdout.strip().splitlines()[-1])
        got["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
        rounds.append(got)
    med: dict[str, Any] = {}
    for name in ("old", "new"):
        for k in rounds[0][name]:
            for m in ("median_ms_per_batch", "mean_ms_per_batch"):
                v = statistics.median(rd[name][k][m] for rd in rounds)
                med.setdefault(f"{name}_{k}", {})[m] = round(v, 4)
    for k in rounds[0]["old"]:
        o = med[f"old_{k}"]["median_ms_per_batch"]
        n = med[f"new_{k}"]["median_ms_per_batch"]
        med[f"ratio_old_over_new_{k}"] = round(o / n, 2)
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "srcs": srcs,
           "rounds": rounds, "medians": med}  # fmt: skip
    if a.out:
        save_result(out, a.out, t0, c0)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
