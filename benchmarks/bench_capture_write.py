"""CPU the capture writer thread spends per captured decision (issue 12): ``capture_row``
(the conversion done off the request path) + ``write_captures`` in batches of 500, 70
features a row, SQLite state DB - the work that competes with requests for the GIL.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_capture_write.py [--old-src DIR]

``--old-src DIR``: the same measurement with another source tree (e.g. ``git archive main
src``) in alternating child processes. Medians of CPU microseconds per row; raw JSON to
benchmarks/results/capture_write.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FEAT, BATCH, BATCHES = 70, 500, 10
RESULTS = Path(__file__).resolve().parent / "results" / "capture_write.json"


def measure(reps: int) -> list[float]:
    import numpy as np

    from bqx.state import StateDB
    from bqx.state.captures import capture_row

    rng = np.random.default_rng(0)
    names = [f"feat_{i:02d}" for i in range(N_FEAT)]
    out = []
    for _ in range(reps):
        d = tempfile.mkdtemp()
        st = StateDB(f"sqlite:///{d}/s.db")
        st.create_tables()
        X = rng.normal(size=(BATCH * BATCHES, N_FEAT))
        c = time.process_time()
        for b in range(BATCHES):
            st.write_captures(
                capture_row(decision_id=f"{b}-{i}", pair="EURUSD", asof_ts="2024-01-04 10:00",
                            model_version="1", names=names, values=X[b * BATCH + i])
                for i in range(BATCH)
            )  # fmt: skip
        out.append(round((time.process_time() - c) / (BATCH * BATCHES) * 1e6, 2))
        st.close()
    return out


def child(src: str, reps: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": src}
    r = subprocess.run(
        [sys.executable, __file__, "--child", str(reps)], env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return list(json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.child)))
        return
    import numpy as np

    arms = {"new": str(Path(__file__).resolve().parents[1] / "src")}
    if a.old_src is not None:
        arms = {"old": str(a.old_src.resolve()), **arms}
    runs: dict[str, list[float]] = {k: [] for k in arms}
    load0 = os.getloadavg()
    for r in range(a.rounds):
        for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:
            runs[name] += child(arms[name], a.reps)
    med = {k: round(float(np.median(v)), 2) for k, v in runs.items()}
    out = {
        "benchmark": "capture_write",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "features": N_FEAT,
        "batch": BATCH,
        "rows_per_rep": BATCH * BATCHES,
        "cpu_us_per_row_median": med,
        "ratio_new_over_old": round(med["new"] / med["old"], 3) if "old" in med else None,
        "runs_cpu_us_per_row": runs,
    }
    print(json.dumps(out, indent=1))
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
