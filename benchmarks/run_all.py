"""Run every benchmark script in turn and keep its JSON in ``benchmarks/results/``.

    .venv/bin/python benchmarks/run_all.py                 # all (about 1.5 hours on 2 cores)
    .venv/bin/python benchmarks/run_all.py --only store,auth
    .venv/bin/python benchmarks/run_all.py --list

Each script prints JSON on stdout (some print one document per stage as they finish,
then the whole); it is written to ``results/<name>.json`` as printed, only when the script
succeeds (a failed run leaves the previous result in place and its stderr in
``results/<name>.err``). Scripts run one after another, never concurrently: they measure
the machine, and two at once would measure each other. The figures in
docs/performance.md are copied from these files by hand, with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: name -> script and arguments, in the order they run (cheap first)
BENCHMARKS: dict[str, list[str]] = {
    "store": ["bench_store.py", "--days", "182"],  # as-of reads on a 6-month store
    "ingest": ["bench_ingest.py"],
    "auth": ["bench_auth.py"],
    "backtest_engine": ["bench_backtest_engine.py"],
    "features": ["bench_features.py"],
    "serving": ["bench_serving.py"],
    "training": ["bench_training.py"],
    "walkforward": ["bench_walkforward.py"],
    "rollout": ["bench_rollout.py"],  # routing cost, operator failover, workers following, A/B
}


def _is_json_stream(out: bytes) -> bool:
    """``out`` is one or more JSON documents (and nothing else)."""
    text = out.decode(errors="replace").strip()
    dec = json.JSONDecoder()
    pos, docs = 0, 0
    while pos < len(text):
        try:
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return False
        docs += 1
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", default="", help="comma-separated names (see --list)")
    ap.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    a = ap.parse_args()
    if a.list:
        for name, cmd in BENCHMARKS.items():
            print(f"{name:16s} benchmarks/{' '.join(cmd)}")
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    failed: list[str] = []
    for i, name in enumerate(names, 1):
        script, *args = BENCHMARKS[name]
        print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        err = RESULTS / f"{name}.err"
        with err.open("w") as ef:
            r = subprocess.run(
                [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, stderr=ef
            )
        dt = time.monotonic() - t0
        if r.returncode != 0 or not _is_json_stream(r.stdout):
            failed.append(name)
            print(f"    FAILED (rc={r.returncode}, {dt:.0f} s): see {err}", file=sys.stderr)
            continue
        (RESULTS / f"{name}.json").write_bytes(r.stdout)
        print(f"    ok in {dt:.0f} s -> results/{name}.json", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
