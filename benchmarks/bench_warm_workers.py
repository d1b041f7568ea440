"""N processes warming up the online kernels at the same time on a cold cache, as the
workers of ``bqx serve --workers N`` do after a deploy, old vs new code (session 15: the
warm-up lock). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_warm_workers.py --old-src OLD/src \\
        [--workers 3] [--out benchmarks/results/warm_workers.json]

Per code: a fresh, empty ``NUMBA_CACHE_DIR`` (so every kernel really compiles), N processes
started together, each calling ``bqx.features.pipeline.warm_up()``; recorded: the wall time
until the last one is warm, each one's own warm-up seconds, and the CPU seconds of the whole
process tree (``getrusage`` of the children, the compile helpers included). Old first, then
new (one run each: a cold compile is ~30 s of CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

CODE = "from bqx.features.pipeline import warm_up; print(round(warm_up(), 2))"


def run(src: str, workers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bqx-warm-") as cache:
        env = {**os.environ, "PYTHONPATH": src, "NUMBA_CACHE_DIR": cache}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CODE], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(workers)
        ]
        own = [float(p.communicate(timeout=900)[0].split()[-1]) for p in procs]
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "warm_up_s_each": own, "cpu_s_all": round(cpu, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-src", required=True)
    ap.add_argument("--new-src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    res = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workers": a.workers,
        "load_avg_1m_at_start": os.getloadavg()[0],
    }
    for name, src in (("old", a.old_src), ("new", a.new_src)):
        res[name] = run(src, a.workers)
        print(name, json.dumps(res[name]), file=sys.stderr, flush=True)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
