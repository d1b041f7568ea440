"""One ``bqx monitor run`` over 28 pairs x 1 day of captured decisions (issue 12).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_monitor_pass.py [--home DIR] [--reuse]
        [--old-src DIR] [--rounds 3] [--workers 2] [--label L]

``--workers N``: an arm of this code with ``monitor.workers = N`` (drift in N forked
processes; the default is 1, in the pass's own process), over the same home as this code's
arm.

``--nice N``: every pass (all arms alike) at nice level N; on the shared, loaded machine a
negative level lets the child have a core, as it would on a dedicated host (needs root).

``--old-src DIR``: A/B against another source tree (e.g. ``git archive main src | tar -x
-C DIR``), over a copy of this code's home (the same data; ``--old-setup``: a home set up
by a child process running that code, so its state DB holds what that code writes, e.g.
JSON captures; ``--compat`` adds an arm of this code over that home). The passes alternate
between the arms (order flipped every round); the drift, quality, maturing and alerts of
each report are compared with the old arm's (JSON-equal).

Setup (not timed): a project home with 3 simulated days of bars for all 28 pairs (DuckDB),
one registered version per pair in MLflow carrying a monitoring baseline of 70 features
(+ prediction, target and the two market columns: ``rvol_60`` and the pair's volatility
relative to the other 27) built from 20,000 rows of the feature process, and in the state
DB (SQLite, the default) 28 x 1,440 decisions of one trading day with their 70 captured
input values and rvol_60 each (written through the state API: ``log_decisions``,
``write_captures``). Features are 60-bar rolling means of noise (autocorrelated like the
served ones); rvol_60 is exp(-9 + a level shared by all pairs + the pair's own), both
rolling means of noise.

Timed: ``bqx monitor run --as-of <last bar> --json`` as a child process, twice:
the first pass matures the 40,320 decisions (reads bars, computes targets, writes them),
the second finds nothing new to mature (the steady state of a pass every few minutes).
Before each first pass the realised targets are reset to NULL (so every round matures the
same 40,320 decisions). Wall time, CPU time (user + system, including the pass's forked
drift workers, which it waits for) and peak RSS (``wait4`` rusage: the largest of the
process and its workers) of each child; the workers' own CPU and peak RSS (from the
report's ``timings``); the report's own ``seconds``; the 1-minute load average before and
after each pass. Medians over rounds.
Raw JSON to benchmarks/results/monitor_pass.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_FEAT, DAY, HORIZON = 70, 1440, 60
CLI_ARGS = ("monitor", "run", "--as-of")
RESULTS = Path(__file__).resolve().parent / "results" / "monitor_pass.json"


def _rolling(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.normal(size=(n + 59, k))
    cs = np.cumsum(np.vstack([np.zeros((1, k)), z]), axis=0)
    return (cs[60:] - cs[:-60]) / np.sqrt(60)


def setup(home: Path) -> str:
    from mlflow import MlflowClient

    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.monitoring.baseline import BASELINE_FILE, training_baseline
    from bqx.monitoring.drift import MARKET_VOL
    from bqx.registry import Registry, model_name
    from bqx.state import new_decision_id, open_state
    from bqx.universe import PAIRS

    shutil.rmtree(home, ignore_errors=True)
    s = Settings(home=home)
    s.ensure_home()
    bars = generate(days=3, pairs=None, seed=3, start="2024-01-02").bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    reg = Registry(s)
    c = MlflowClient(s.resolved_tracking_uri)
    exp = reg.experiment_id()  # artifacts under the home, as bqx train puts them
    state = open_state(s)
    rng = np.random.default_rng(0)
    names = [f"feat_{i:02d}" for i in range(N_FEAT)]
    as_of = None
    # the market column (rvol_60) of every pair: a shared level times the pair's own, both
    # slowly varying; training rows and the served day alike
    common = _rolling(rng, 20_000 + DAY, 1)[:, 0] * 0.2
    rvol = {p: np.exp(-9.0 + common + 0.1 * _rolling(rng, 20_000 + DAY, 1)[:, 0]) for p in PAIRS}
    for pair in PAIRS:
        Xtr = pd.DataFrame(_rolling(rng, 20_000, N_FEAT), columns=names)
        Xtr[MARKET_VOL] = rvol[pair][:20_000]
        pred = Xtr.iloc[:, 0].to_numpy() * 1e-4
        y = pred + rng.normal(size=len(Xtr)) * 1e-3
        market = {p: v[:20_000] for p, v in rvol.items() if p != pair}
        base = training_baseline(Xtr, names, pred, y, market=market)
        run = c.create_run(exp)
        c.log_dict(run.info.run_id, base, f"model/{BASELINE_FILE}")
        c.set_terminated(run.info.run_id)
        c.create_registered_model(model_name(pair))
        mv = c.create_model_version(
            model_name(pair), f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        for k, v in (("pair", pair), ("test_r2", "0.01"), ("test_da", "0.52")):
            c.set_model_version_tag(model_name(pair), mv.version, k, v)
        c.set_registered_model_alias(model_name(pair), "production", mv.version)
        # one trading day of served bars, each matured HORIZON bars later within the data
        ts = pd.DatetimeIndex(sorted(bars.loc[bars["pair"] == pair, "ts"].unique()))
        assert len(ts) > DAY + HORIZON
        served = ts[-(DAY + HORIZON) : -HORIZON]
        as_of = served[-1]
        X = np.column_stack([_rolling(rng, DAY, N_FEAT), rvol[pair][20_000:]])
        ids = [new_decision_id() for _ in range(DAY)]
        state.log_decisions(
            {"decision_id": i, "pair": pair, "asof_ts": t, "horizon": HORIZON,
             "prediction": float(x[0] * 1e-4), "model_version": str(mv.version),
             "request_time": t}
            for i, t, x in zip(ids, served, X, strict=True)
        )  # fmt: skip
        rows = [
            {"decision_id": i, "captured_at": t, "pair": pair, "asof_ts": t,
             "model_version": str(mv.version),
             "values": dict(zip([*names, MARKET_VOL], map(float, x), strict=True))}
            for i, t, x in zip(ids, served, X, strict=True)
        ]  # fmt: skip
        state.write_captures(rows)
    return str(as_of)


def run_cli(
    home: Path, as_of: str, src: str | None = None, nice: int = 0, env_extra: dict | None = None
) -> dict:
    env = {**os.environ, "BQX_HOME": str(home), **(env_extra or {})}
    src = src or str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", "from bqx.cli import main; main()", *CLI_ARGS, as_of, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)) if nice else None,
    )
    out = p.stdout.read() if p.stdout else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, out[-2000:]
    rep = json.loads(out)
    drift = rep.get("drift") or {}
    workers = (rep.get("timings") or {}).get("drift_workers") or []
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "pass_seconds": round(rep["seconds"], 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        # forked drift workers (this code): their own CPU (inside cpu_s) and peak RSS
        "worker_cpu_s": [w["cpu_s"] for w in workers],
        "worker_peak_rss_mb": [w["peak_rss_mb"] for w in workers],
        "steps": (rep.get("timings") or {}).get("steps"),
        "matured": (rep.get("mature") or {}).get("matured"),
        "quality_rows": len(rep["quality"]["rows"]),
        "drift_pairs": len(drift.get("pairs", [])),
        "drift_columns": sum(len(p["columns"]) for p in drift.get("pairs", [])),
        "errors": rep["errors"],
        "load1_before": round(load0, 2),
        "load1": round(os.getloadavg()[0], 2),
        "_report": rep,
    }


def unmature(home: Path) -> None:
    """Reset the realised targets, so that the next pass matures all decisions again."""
    import sqlite3

    con = sqlite3.connect(home / "state.db")
    con.execute("UPDATE decisions SET realized_target = NULL, realized_at = NULL")
    con.commit()
    con.close()


def _same_results(a: dict, b: dict) -> dict:
    """Do two reports agree on drift, quality and maturing (JSON-equal)?"""

    def key(r: dict) -> dict:
        drift = {
            (p["pair"], p["model_version"]): p for p in (r.get("drift") or {}).get("pairs", [])
        }
        return {
            "drift": json.dumps(sorted(drift.items()), sort_keys=True, default=str),
            "quality": json.dumps(r["quality"], sort_keys=True, default=str),
            "matured": (r.get("mature") or {}).get("matured"),
            "alerts": json.dumps(r.get("alerts"), sort_keys=True, default=str),
        }

    ka, kb = key(a), key(b)
    return {k: ka[k] == kb[k] for k in ka}


def _median(runs: list[dict], k: str) -> float:
    return round(float(np.median([r[k] for r in runs])), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("/tmp/bqx-bench-monitor"))
    ap.add_argument("--reuse", action="store_true", help="skip setup (homes from a prior run)")
    ap.add_argument("--setup-only", action="store_true")
    ap.add_argument("--old-src", type=Path, default=None, help="source tree to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--label", default="")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every pass at this nice level (all arms alike; < 0 needs root): on a "
        "shared host, lets the child have a core, as on a dedicated one",
    )
    ap.add_argument(
        "--workers", type=int, default=0, help="an arm of this code with monitor.workers = N"
    )
    ap.add_argument(
        "--old-setup",
        action="store_true",
        help="set the old arm's home up with the old code (default: a copy of this home)",
    )
    ap.add_argument("--compat", action="store_true", help="an arm of this code on the old home")
    a = ap.parse_args()

    def ensure(home: Path, src: Path | None) -> str:
        meta = home / "bench_as_of.txt"
        if a.reuse and meta.exists():
            return meta.read_text().strip()
        if src is None:
            as_of = setup(home)
            meta.write_text(as_of)
            return as_of
        env = {**os.environ, "PYTHONPATH": str(src)}
        subprocess.run(
            [sys.executable, __file__, "--setup-only", "--home", str(home)], env=env, check=True
        )
        return meta.read_text().strip()

    t0 = time.perf_counter()
    Arm = tuple[Path, str | None, dict]
    arms: dict[str, Arm] = {"new": (a.home, None, {})}
    as_of = ensure(a.home, None)
    if a.setup_only:
        return
    if a.workers > 1:  # this code with the drift in forked workers
        arms[f"new_workers{a.workers}"] = (a.home, None, {"BQX_MONITOR__WORKERS": str(a.workers)})
    if a.old_src is not None:
        old_home = a.home.with_name(a.home.name + "-old")
        if a.old_setup:  # its own home, written by that code (e.g. another capture format)
            assert ensure(old_home, a.old_src.resolve()) == as_of
        elif not (a.reuse and (old_home / "bench_as_of.txt").exists()):
            shutil.rmtree(old_home, ignore_errors=True)  # a copy: the very same data
            shutil.copytree(a.home, old_home)
        arms = {"old": (old_home, str(a.old_src.resolve()), {}), **arms}
        if a.compat:
            compat = a.home.with_name(a.home.name + "-compat")
            if not (a.reuse and (compat / "bench_as_of.txt").exists()):
                shutil.rmtree(compat, ignore_errors=True)
                shutil.copytree(old_home, compat)
            arms["new_on_old_home"] = (compat, None, {})
    setup_s = time.perf_counter() - t0
    runs: dict[str, dict[str, list[dict]]] = {k: {"first": [], "second": []} for k in arms}
    load_before = os.getloadavg()
    for r in range(a.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for name in order:
            home, src, env = arms[name]
            unmature(home)
            runs[name]["first"].append(run_cli(home, as_of, src, a.nice, env))
            runs[name]["second"].append(run_cli(home, as_of, src, a.nice, env))
            print(name, r, {p: (runs[name][p][-1]["wall_s"], runs[name][p][-1]["cpu_s"],
                                runs[name][p][-1]["load1"]) for p in ("first", "second")},
                  file=sys.stderr)  # fmt: skip
    load_after = os.getloadavg()
    same = {}
    if "old" in runs:
        for name in arms:
            if name != "old":
                same[name] = {
                    p: _same_results(runs["old"][p][-1]["_report"], runs[name][p][-1]["_report"])
                    for p in ("first", "second")
                }
    summary: dict[str, dict] = {}
    for name, by in runs.items():
        summary[name] = {}
        for p, rs in by.items():
            for x in rs:
                x.pop("_report", None)
            summary[name][p] = {
                k: _median(rs, k) for k in ("wall_s", "cpu_s", "pass_seconds", "peak_rss_mb")
            } | {"load1": [x["load1"] for x in rs],
                 "worker_peak_rss_mb": rs[-1]["worker_peak_rss_mb"],
                 "worker_cpu_s": rs[-1]["worker_cpu_s"]} | {"matured": rs[-1]["matured"], "drift_columns": rs[-1]["drift_columns"],
                 "quality_rows": rs[-1]["quality_rows"], "errors": rs[-1]["errors"]}  # fmt: skip
            steps = [x["steps"] for x in rs if x.get("steps")]
            if steps:  # the pass's own process per step (the report's timings, this code)
                for unit in ("cpu_s", "wall_s"):
                    summary[name][p][f"steps_{unit}"] = {
                        k: round(float(np.median([st[k][unit] for st in steps])), 4)
                        for k in steps[-1]
                    }
    ratios = {}
    if "old" in summary:
        for name in summary:
            if name == "old":
                continue
            ratios[f"{name}/old"] = {
                p: {
                    k: round(summary[name][p][k] / summary["old"][p][k], 3)
                    for k in ("wall_s", "cpu_s", "pass_seconds", "peak_rss_mb")
                }
                for p in ("first", "second")
            }
    out = {
        "benchmark": "monitor_pass",
        "label": a.label,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "pairs": 28,
        "decisions": 28 * DAY,
        "captured_features": N_FEAT,
        "rounds": a.rounds,
        "nice": a.nice,
        "arms": {
            k: {"home": str(v[0]), "src": v[1] or "this tree", "env": v[2]} for k, v in arms.items()
        },
        "setup_s": round(setup_s, 1),
        "median": summary,
        "ratios": ratios,
        "same_results_as_old": same,
        "runs": runs,
    }
    print(json.dumps({k: out[k] for k in ("median", "ratios", "same_results_as_old")}, indent=1))
    dst = RESULTS.with_name(f"monitor_pass_{a.label}.json") if a.label else RESULTS
    dst.parent.mkdir(exist_ok=True)
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
