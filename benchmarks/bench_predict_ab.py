"""Uncached online features and predictions of the real 70-feature versions, old vs new code,
alternated call by call in one run (issue 15 item 4). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_predict_ab.py --old-src OLD/src \\
        [--home /tmp/bqx-bench-predfast2] [--bars 1000] [--http-rounds 2] \\
        [--out benchmarks/results/predict_ab_predfast2.json]

``OLD/src`` is another checkout's ``src`` (e.g. ``git archive main | tar -x -C /tmp/old``).
The home is ``benchmarks/bench_serving.py``'s (created here when missing: 20 simulated days,
an RF with the SPEC parameters for EURUSD and a LightGBM for USDJPY, 70 features each).

Part 1, in-process (no HTTP), twice: two worker processes, one per code, take the bar panel
of a live :class:`~bqx.serving.service.PredictionService` on the home and the versions'
columns. The parent sends the same bars to both, alternating which goes first bar by bar, so
load on the shared machine hits both alike; wall time (``perf_counter``) and CPU time
(``process_time``) per call, p50 / p99 per code and pair, and the old/new ratio of the p50s.
Each worker also returns a digest of the feature vector: ``bars_with_identical_values``
counts the bars where both codes computed the same values bit for bit.

* ``at_array_bare``: the service is closed first (no background threads), and each worker
  times ``at_array(panel, pair, t, only=<the version's columns>)`` alone: the uncached
  ``at()`` of a 70-feature version.
* ``in_service``: the service stays up (decision log and input capture on, as in
  ``bqx serve``) and each worker times ``at_array`` and then ``predict(pair, t)`` on a bar
  not asked before (no feature or prediction cache hit). ``process_time`` counts the
  background threads (the decision-log and capture writers) too, so both figures carry
  some of the writers' CPU.

Part 2 (``--http-rounds N``, 0 to skip): uncached ``POST /v1/predict`` with one worker per
code, ``bench_serving.py --miss-ab``'s protocol (a fresh ``bqx serve --workers 1`` per round
and code, every bar of the in-memory day once from 8 closed-loop clients on the same
machine, order swapped each round): requests per second, and the server's CPU time per
request (its process tree, from ``/proc``). ``--cached-seconds S`` adds, per round, code and
model, S seconds of 8 clients asking for the newest bar (cache hits), measured the same
way; ``--http-only`` skips part 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PAIRS = ("EURUSD", "USDJPY")  # the RF and the LightGBM version of bench_serving's setup


def worker(home: str, bare: bool) -> None:
    """Serve timing requests on stdin: ``pair index`` -> a JSON line [feat wall, feat cpu,
    predict wall, predict cpu] (ms). ``bare``: the service is closed after taking its bar
    panel and the versions' columns (no background threads), and only ``at_array`` is timed
    (predict entries are 0)."""
    sys.path.insert(0, str(HERE))
    import pandas as pd
    from bench_serving import _timestamps

    from bqx.config import Settings
    from bqx.features import at_array
    from bqx.serving.service import PredictionService, _needed_columns

    svc = PredictionService(Settings(home=Path(home)), live=True)
    svc.start()
    try:
        ctx: dict[str, Any] = {}
        for pair in PAIRS:
            svc.predict(pair)  # model load, the newest bar
            only = _needed_columns(svc, pair)
            ts = _timestamps(Path(home), pair, 1400)[:-1]  # the newest one is asked above
            ctx[pair] = (only, ts)
        print(json.dumps({"bars": {p: len(v[1]) for p, v in ctx.items()}}), flush=True)
        panel = svc.bars.snapshot.panel  # type: ignore[union-attr]
        if bare:
            svc.close()
        pt, pc = time.process_time, time.perf_counter
        for line in sys.stdin:
            pair, i = line.split()
            only, ts = ctx[pair]
            t = ts[int(i)]
            asof = svc._closed_by(pd.Timestamp(t))
            w0, c0 = pc(), pt()
            vals, _ = at_array(panel, pair, asof, only=only)
            w1, c1 = pc(), pt()
            if not bare:
                r = svc.predict(pair, t)
                assert not r.feature_cache_hit
            w2, c2 = (w1, c1) if bare else (pc(), pt())
            ms = [(w1 - w0) * 1e3, (c1 - c0) * 1e3, (w2 - w1) * 1e3, (c2 - c1) * 1e3]
            # a digest of the values (after the timing): the parent checks that both codes
            # computed the same features bit for bit
            digest = hashlib.blake2b(vals.tobytes(), digest_size=8).hexdigest()
            print(json.dumps([*ms, digest]), flush=True)
    finally:
        svc.close()


def _q(x: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(x, 50)), 4),
        "p99_ms": round(float(np.percentile(x, 99)), 4),
    }


def in_process(home: Path, old_src: str, new_src: str, bars: int, bare: bool) -> dict[str, Any]:
    procs = {}
    for name, src in (("old", old_src), ("new", new_src)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
        env.update({"PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1"})
        cmd = [sys.executable, __file__, "--worker", "--home", str(home)]
        cmd += ["--bare"] if bare else []
        procs[name] = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    info = {k: json.loads(p.stdout.readline()) for k, p in procs.items()}  # type: ignore[union-attr]
    keys: tuple[str, ...] = ("features_wall", "features_cpu", "predict_wall", "predict_cpu")
    res: dict[str, dict[str, dict[str, list[float]]]] = {
        k: {p: {key: [] for key in keys} for p in PAIRS} for k in procs
    }
    loads = [os.getloadavg()[0]]
    same = {p: 0 for p in PAIRS}
    c = 0
    for pair in PAIRS:
        n = min(bars, info["new"]["bars"][pair], info["old"]["bars"][pair])
        for i in range(n):
            order = ("old", "new") if c % 2 == 0 else ("new", "old")
            c += 1
            digests = {}
            for k in order:
                p = procs[k]
                p.stdin.write(f"{pair} {i}\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
                vals = json.loads(p.stdout.readline())  # type: ignore[union-attr]
                for key, v in zip(keys, vals[:4], strict=True):
                    res[k][pair][key].append(v)
                digests[k] = vals[4]
            same[pair] += digests["old"] == digests["new"]
            if i % 200 == 0:
                loads.append(os.getloadavg()[0])
    for p in procs.values():
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(timeout=60)
    loads.append(os.getloadavg()[0])
    if bare:
        keys = keys[:2]
    out: dict[str, Any] = {"load_avg_1m_during": [round(x, 2) for x in loads]}
    for pair in PAIRS:
        per: dict[str, Any] = {"bars": len(res["new"][pair]["predict_cpu"])}
        # bars where old and new returned the same feature vector, bit for bit
        per["bars_with_identical_values"] = same[pair]
        for k in procs:
            per[k] = {key: _q(res[k][pair][key]) for key in keys}
        per["ratio_old_over_new_p50"] = {
            key: round(
                float(np.median(res["old"][pair][key]) / np.median(res["new"][pair][key])), 2
            )
            for key in keys
        }
        if not bare:
            per["bound_req_per_s_from_predict_cpu_p50"] = {
                k: round(1000.0 / float(np.median(res[k][pair]["predict_cpu"])), 1) for k in procs
            }
        out[pair] = per
    return out


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
    tree, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for q, (ppid, _) in stats.items():
            if ppid in tree and q not in tree:
                tree.add(q)
                grew = True
    for q in tree:
        total += stats.get(q, (0, 0.0))[1]
    return total


def _main_thread_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the main thread of ``pid`` (the server's event loop)."""
    f = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def http_side_by_side(
    home: Path, old_src: str, new_src: str, rounds: int, cached_s: float = 0.0
) -> dict[str, Any]:
    """``bench_serving.py --miss-ab``'s protocol (fresh ``bqx serve --workers 1`` per round
    and code, every bar of the in-memory day once from 8 closed-loop clients, order swapped
    each round), plus the server's own CPU per request (its process tree's user + system
    time over the run, from ``/proc``): on a loaded machine the rate mostly measures the
    share of a core the server gets; its CPU per request is what the code costs."""
    import bench_serving as bs

    key = bs._key(home)
    ts = {p: bs._timestamps(home, p, 1400) for p in (bs.RF_PAIR, bs.LGB_PAIR)}
    out: dict[str, Any] = {"rounds": []}
    order = (("old", old_src), ("new", new_src))
    for r in range(rounds):
        row: dict[str, Any] = {}
        for name, src in order if r % 2 == 0 else order[::-1]:
            proc, base = bs.serve(home, 1, src=src)
            try:
                url = f"{base}/v1/predict"
                for model, pair in (("rf", bs.RF_PAIR), ("lightgbm", bs.LGB_PAIR)):
                    miss = bs.build_requests(
                        url, [{"pair": pair, "timestamp": t} for t in ts[pair]], key
                    )
                    hit = bs.build_requests(url, [{"pair": pair}], key)
                    bs.run(bs.saturate(url, hit, 0.5, 4))  # warm-up: connections, model
                    cpu0, load0 = _tree_cpu_s(proc.pid), os.getloadavg()[0]
                    main0 = _main_thread_cpu_s(proc.pid)
                    res = bs.run(bs.saturate(url, miss, 30.0, 8, once=True)).summary()
                    time.sleep(0.5)  # the writers' last group commits
                    cpu = _tree_cpu_s(proc.pid) - cpu0
                    main = _main_thread_cpu_s(proc.pid) - main0
                    n = res["requests"]
                    res["server_cpu_ms_per_request"] = round(cpu * 1e3 / n, 3)
                    # the event loop (HTTP + predict) vs the other threads (decision-log and
                    # capture writers, bar refresh)
                    res["server_main_thread_cpu_ms_per_request"] = round(main * 1e3 / n, 3)
                    res["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
                    row[f"{name}_{model}"] = res
                    print(f"round {r} {name} {model}: {json.dumps(res)}", file=sys.stderr)
                    if cached_s > 0:  # the newest bar again and again: cache hits
                        cpu0, load0 = _tree_cpu_s(proc.pid), os.getloadavg()[0]
                        main0 = _main_thread_cpu_s(proc.pid)
                        res = bs.run(bs.saturate(url, hit, cached_s, 8)).summary()
                        time.sleep(0.5)
                        cpu = _tree_cpu_s(proc.pid) - cpu0
                        main = _main_thread_cpu_s(proc.pid) - main0
                        n = res["requests"]
                        res["server_cpu_ms_per_request"] = round(cpu * 1e3 / n, 3)
                        res["server_main_thread_cpu_ms_per_request"] = round(main * 1e3 / n, 3)
                        res["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
                        row[f"{name}_{model}_cached"] = res
                        print(
                            f"round {r} {name} {model} cached: {json.dumps(res)}", file=sys.stderr
                        )
            finally:
                bs._stop(proc)
        out["rounds"].append(row)
    for k in out["rounds"][0]:
        for f in (
            "req_per_s",
            "server_cpu_ms_per_request",
            "server_main_thread_cpu_ms_per_request",
        ):
            out[f"median_{f}_{k}"] = float(np.median([x[k][f] for x in out["rounds"]]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src", help="the code to compare against (another checkout's src)")
    ap.add_argument("--new-src", help="the code under test (default: this checkout's src)")
    ap.add_argument("--home", default="/tmp/bqx-bench-predfast2")
    ap.add_argument("--days", type=int, default=20, help="simulated days when creating the home")
    ap.add_argument("--bars", type=int, default=1000, help="bars per pair (in-process part)")
    ap.add_argument("--http-rounds", type=int, default=2, help="0: skip the HTTP part")
    ap.add_argument(
        "--cached-seconds",
        type=float,
        default=0.0,
        help="also measure cached requests (the newest bar) for this long per code and model",
    )
    ap.add_argument("--http-only", action="store_true", help="skip the in-process parts")
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.home, a.bare)
        return
    if not a.old_src:
        ap.error("--old-src is required")
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    home = Path(a.home)
    new_src = a.new_src or str(HERE.parent / "src")
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "old_src": a.old_src,
        "new_src": new_src,
        "setup": bs.setup(home, a.days),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    if not a.http_only:
        out["at_array_bare"] = in_process(home, a.old_src, new_src, a.bars, bare=True)
        print(json.dumps(out["at_array_bare"], indent=1), file=sys.stderr)
        out["in_service"] = in_process(home, a.old_src, new_src, a.bars, bare=False)
        print(json.dumps(out["in_service"], indent=1), file=sys.stderr)
    if a.http_rounds:
        out["load_avg_1m_before_http"] = round(os.getloadavg()[0], 2)
        out["http_miss_one_worker"] = http_side_by_side(
            home, a.old_src, new_src, a.http_rounds, a.cached_seconds
        )
        out["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
