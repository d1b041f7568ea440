"""Decision-layer benchmark (issue 14 "Must show"). Prints JSON.

    .venv/bin/python benchmarks/bench_decision.py [--days 10] [--quick]
    .venv/bin/python benchmarks/bench_decision.py --days 8 --only onoff --home DIR \
        [--client api] [--arms stopped,running,regime_off,old_worker_old_backoff \
         --old-src /path/to/main/src] [--blocks 4 --per-block 150]

``--only onoff`` is the fast worker A/B (answers "does the worker move the client's
p99?"): arms alternate in rounds in one run, with a per-request breakdown (store open,
store-lock sleep, state DB, client CPU) and each arm's per-block p99 as the noise;
``--home`` keeps the trained setup for the next run.

* regime recovery: the simulator's true volatility regime vs the filtered HMM state (by
  volatility rank) on the test segment (last 30 %) of pairs, fitted on the first 70 %;
* regime cost: one ``RegimeModel.at`` (cache miss) and in-process predict p50/p99 with the
  regime on vs off, alternating blocks on the same service, every request a different bar;
* forensics: SHAP ms per decision for the default RF and LightGBM; predict p50/p99 with a
  ``bqx forensics worker`` process running vs stopped (SIGSTOP/SIGCONT of that process,
  alternating blocks); the worker's explanations/s vs the 28 pairs x 1 decision per bar;
* risk: ``RiskManager.check`` p50/p95 with 28 open positions (portfolio read from SQLite,
  market data cached) and the VaR computation time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v) * 1000.0, q))


def regime_recovery(
    days: float, train_days: float, pairs: list[str], restarts: int, seed: int = 7
) -> dict[str, Any]:
    """Fit each pair's HMM on the first ``train_days`` of a simulated all-28-pair market,
    then score the filtered state's volatility rank (the labelling rule, no look at the
    truth) against the simulator's true regime on every LATER bar (held-out time)."""
    from sklearn.metrics import balanced_accuracy_score

    from bqx.data.simulator import REGIME_NAMES, generate
    from bqx.decision.regime import fit_regime
    from bqx.features.panel import Panel

    sim = generate(days=days, seed=seed)
    panel = Panel.from_bars(sim.bars)
    ts = panel.ts
    truth = sim.regimes.reindex(pd.DatetimeIndex(ts, tz="UTC")).to_numpy()
    ntr = int(
        np.searchsorted(ts, (pd.Timestamp(ts[0], tz="UTC") + pd.Timedelta(days=train_days)).value)
    )
    test = np.arange(len(ts)) >= ntr
    tt = truth[test].astype(int)
    counts = np.bincount(tt, minlength=3)
    share = counts / counts.sum()
    rng = np.random.default_rng(0)
    rand = rng.choice(3, size=len(tt), p=share)  # random labels drawn with the true shares
    out: dict[str, Any] = {
        "days": days,
        "train_days": train_days,
        "seed": seed,
        "train_bars": int(ntr),
        "test_bars": int(test.sum()),
        "train_counts": np.bincount(truth[:ntr].astype(int), minlength=3).tolist(),
        "test_counts": counts.tolist(),
        "majority_class_share": float(share.max()),
        "random_labels_expected_accuracy": float((share**2).sum()),
        "random_labels_accuracy": float(np.mean(rand == tt)),
        "random_labels_balanced_accuracy": float(balanced_accuracy_score(tt, rand)),
        "balanced_accuracy_chance": 1 / 3,
        "pairs": {},
    }
    accs, baccs = [], []
    import itertools

    for pair in pairs:
        m = fit_regime(panel.close[:ntr], ts[:ntr], panel.pairs, pair=pair, restarts=restarts)
        P = m.filter(panel.close, ts, panel.pairs)
        st = np.argmax(P, axis=1)[test]
        vr = np.asarray(m.vol_rank)[st]
        acc = float(np.mean(vr == tt))
        bacc = float(balanced_accuracy_score(tt, vr))
        perm = [float(np.mean(np.asarray(p)[st] == tt)) for p in itertools.permutations(range(3))]
        conf = pd.crosstab(
            pd.Series(tt, name="true").map(dict(enumerate(REGIME_NAMES))),
            pd.Series(vr, name="filtered_vol_rank"),
        )
        accs.append(acc)
        baccs.append(bacc)
        out["pairs"][pair] = {
            "accuracy": acc,
            "balanced_accuracy": bacc,
            "accuracy_random_state_mapping_mean": float(np.mean(perm)),
            "labels": m.labels,
            "vol_rank": m.vol_rank,
            "means": m.means.round(4).tolist(),
            "confusion": conf.to_dict(),
            "fit_seconds": m.fit_info["fit_seconds"],
            "fit_rows": m.fit_info["rows"],
        }
    out["accuracy_mean"] = float(np.mean(accs))
    out["accuracy_min"] = float(np.min(accs))
    out["balanced_accuracy_mean"] = float(np.mean(baccs))
    out["balanced_accuracy_min"] = float(np.min(baccs))
    return out


def setup_home(home: Path, days: float) -> Any:
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.decision.regime import fit_for_artifact
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.ensure_home()
    bars = generate(days=days, seed=5, signal_strength=0.1).bars
    store = open_store(settings=s)
    store.upsert(bars)
    reg = Registry(s)
    shap_ms: dict[str, Any] = {}
    arts = {}
    for pair, model in (("EURUSD", "rf"), ("USDJPY", "lightgbm")):
        df = F.build(bars, pair, with_target=True)
        r = train_frame(pair, df, s, model=model, n_jobs=2)
        fit_for_artifact(r.artifact, s, store)
        v = reg.log_and_register(r)
        reg.promote(pair, v, actor="bench", reason="benchmark")
        arts[model] = (r.artifact, df.drop(columns=["target"]).to_numpy(np.float64))
    store.close()
    from bqx.decision.forensics import shap_values

    for model, (art, X) in arts.items():
        rows = X[-200:]
        shap_values(art, rows[0])  # build the explainer
        t = []
        for x in rows[1:61]:
            t0 = time.perf_counter()
            shap_values(art, x)
            t.append(time.perf_counter() - t0)
        shap_ms[model] = {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "n": len(t)}
    return s, shap_ms


def predict_blocks(
    svc: Any, pair: str, stamps: list[pd.Timestamp], toggle: Any, blocks: int, arms=("A", "B")
):
    """Alternate the arms in blocks (the order rotates each block); every request a
    different bar (feature cache misses)."""
    res: dict[str, list[float]] = {a: [] for a in arms}
    per = len(stamps) // (len(arms) * blocks)
    k = 0
    for b in range(blocks):
        order = list(arms[b % len(arms) :]) + list(arms[: b % len(arms)])
        for arm in order:
            toggle(arm)
            for _ in range(per):
                ts = stamps[k % len(stamps)]
                k += 1
                t0 = time.perf_counter()
                svc.predict(pair, ts, source="bench")
                res[arm].append(time.perf_counter() - t0)
    return {a: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v)} for a, v in res.items()}


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    """A ``bqx forensics worker`` process, returned once it has started following."""
    cmd = "from bqx.cli import main; main()"
    p = subprocess.Popen(
        [sys.executable, "-c", cmd, "forensics", "worker", "--poll", "0.2", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert p.stdout is not None
    p.stdout.readline()  # the banner: settings loaded, priority applied
    p.stdout.close()
    return p


WORKER_ARGS = {
    "stopped": None,
    "old_nice10_uncapped": ("--no-idle", "--nice", "10", "--max-cpu-share", "1"),
    "idle_capped": ("--idle", "--max-cpu-share", "0.25"),
    "nice19_capped": ("--no-idle", "--nice", "19"),
}


def worker_ab(svc: Any, home: Path, stamps: list[pd.Timestamp], blocks: int) -> dict[str, Any]:
    """Client predict latency with no worker, with a nice-10 uncapped worker (the default),
    and with low-priority capped ones (idle class / nice 19, CPU share <= 0.25; the JSON of
    run 3 calls the idle one "default_idle_capped"), arms alternating in
    blocks. Each running arm starts its own worker process (measured only once it has
    explained two decisions: models loaded) and ends it with SIGTERM: SIGSTOP would freeze a worker holding the DuckDB
    file lock and block the client's store reads (it did, in the first try of this run)."""
    import sqlalchemy as sa

    env = {**os.environ, "BQX_HOME": str(home)}
    f = svc.state.t.forensics

    def explained() -> int:
        with svc.state._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(f)).scalar())

    done: dict[str, int] = dict.fromkeys(WORKER_ARGS, 0)
    wall: dict[str, float] = dict.fromkeys(WORKER_ARGS, 0.0)
    cur: list[Any] = [None, 0, 0.0, None]  # arm, count and time at its start, process

    def toggle(arm: str | None) -> None:
        if cur[0] is not None:
            done[cur[0]] += explained() - cur[1]
            wall[cur[0]] += time.perf_counter() - cur[2]
        if cur[3] is not None:
            cur[3].terminate()
            cur[3].wait(30)
        w = None
        if arm is not None and WORKER_ARGS[arm] is not None:
            w = _worker(env, *WORKER_ARGS[arm])
            n0, t0 = explained(), time.perf_counter()
            while explained() <= n0 + 1 and time.perf_counter() - t0 < 120:
                time.sleep(0.2)  # measure only once it explains (models loaded, warm)
        cur[:] = [arm, explained(), time.perf_counter(), w]

    try:
        res = predict_blocks(svc, "EURUSD", stamps, toggle, blocks, arms=tuple(WORKER_ARGS))
    finally:
        toggle(None)
    for arm in res:
        res[arm]["explained_during_arm"] = done[arm]
        res[arm]["explanations_per_s"] = done[arm] / wall[arm] if wall[arm] else None
    return res


def _timed_state(svc: Any) -> list[float]:
    """Wrap ``svc.state.log_decisions`` (the synchronous decision log of the in-process
    path) with a timer; returns the list the seconds of each call are appended to."""
    spent: list[float] = []
    st = svc.state
    orig = st.log_decisions

    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            spent.append(time.perf_counter() - t0)

    st.log_decisions = timed
    return spent


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    w = np.array([r["wall"] for r in rows])
    out: dict[str, Any] = {
        "n": len(rows),
        "p50_ms": float(np.percentile(w, 50) * 1e3),
        "p99_ms": float(np.percentile(w, 99) * 1e3),
        "cpu_p50_ms": float(np.percentile([r["cpu"] for r in rows], 50) * 1e3),
    }
    # where the slowest 2 % of the requests spent their time (means, ms)
    tail = [r for r in rows if r["wall"] >= np.percentile(w, 98)]
    out["slowest_2pct_mean_ms"] = {
        k: float(np.mean([r[k] for r in tail]) * 1e3)
        for k in ("wall", "cpu", "store_open", "store_lock_sleep", "state_db")
    }
    out["requests_that_waited_for_the_store_lock"] = int(
        sum(r["store_lock_sleep"] > 0 for r in rows)
    )
    return out


#: arms of the on/off A/B: the worker's code (None: no worker; "new": this checkout,
#: "old": ``--old-src``, the code before the fix) and the client's cap on its sleep between
#: attempts to open the DuckDB file (0.25 s before the fix); whether the regime detector
#: runs (in-process client only: the service's switch)
ONOFF_ARMS: dict[str, tuple[str | None, float, bool]] = {
    "stopped": (None, 0.025, True),
    "running": ("new", 0.025, True),
    "regime_off": (None, 0.025, False),
    "old_worker_old_backoff": ("old", 0.25, True),
    "old_worker_new_backoff": ("old", 0.025, True),
    "new_worker_old_backoff": ("new", 0.25, True),
}


def worker_onoff(
    svc: Any,
    home: Path,
    stamps: list[pd.Timestamp],
    blocks: int,
    per_block: int,
    worker_args: tuple[str, ...],
    arms: tuple[str, ...] = ("stopped", "running"),
    old_src: str | None = None,
    call: Any = None,
) -> dict[str, Any]:
    """Client predict latency with the ``bqx forensics worker`` stopped vs running,
    alternated in ``blocks`` rounds of ``per_block`` requests per arm (the arm order
    rotates each round), every request a different bar. One worker process per running
    block, measured once it has explained two decisions (warm); ended with SIGTERM (a
    SIGSTOPped worker could hold the DuckDB file lock). Per request: wall, the client
    thread's CPU, time opening store connections (lock waits included), time sleeping for
    the store's file lock, and time in the state DB (the synchronous decision log).
    ``call(ts)``: the request (default: the in-process ``svc.predict``; the API client
    passes an HTTP request to a ``bqx serve``, whose breakdown then reads 0)."""
    import sqlalchemy as sa

    import bqx.data.store as store_mod

    env = {**os.environ, "BQX_HOME": str(home)}
    src = {"new": str(Path(__file__).resolve().parents[1] / "src"), "old": old_src}
    f = svc.state.t.forensics
    store_stats = svc.store.open_stats
    state_spent = _timed_state(svc)
    if call is None:

        def call(ts: pd.Timestamp) -> None:
            svc.predict("EURUSD", ts, source="bench")

    def explained() -> int:
        with svc.state._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(f)).scalar())

    rows: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    per_block_p: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    done = dict.fromkeys(arms, 0)
    wall = dict.fromkeys(arms, 0.0)
    k = 0
    for b in range(blocks):
        order = list(arms[b % len(arms) :]) + list(arms[: b % len(arms)])
        for arm in order:
            code, cap, regime = ONOFF_ARMS[arm]
            store_mod.LOCK_RETRY_MAX_S = cap
            svc.regime.settings.enabled = regime
            w = None
            try:
                if code is not None:
                    w = _worker({**env, "PYTHONPATH": str(src[code])}, *worker_args)
                    n0, t0 = explained(), time.perf_counter()
                    while explained() <= n0 + 1 and time.perf_counter() - t0 < 120:
                        call(stamps[0])  # decisions to explain (not a new bar)
                        time.sleep(0.2)
                n0, tb = explained(), time.perf_counter()
                blk: list[dict[str, float]] = []
                for _ in range(per_block):
                    ts = stamps[k % len(stamps)]
                    k += 1
                    o0, s0, q0 = (
                        store_stats["open_s"],
                        store_stats["lock_sleep_s"],
                        len(state_spent),
                    )
                    c0, t0 = time.thread_time(), time.perf_counter()
                    call(ts)
                    blk.append(
                        {
                            "wall": time.perf_counter() - t0,
                            "cpu": time.thread_time() - c0,
                            "store_open": store_stats["open_s"] - o0,
                            "store_lock_sleep": store_stats["lock_sleep_s"] - s0,
                            "state_db": float(sum(state_spent[q0:])),
                        }
                    )
                wall[arm] += time.perf_counter() - tb
                done[arm] += explained() - n0
            finally:
                if w is not None:
                    w.terminate()
                    w.wait(30)
            rows[arm] += blk
            bs = _summary(blk)
            per_block_p[arm].append({"block": b, "p50_ms": bs["p50_ms"], "p99_ms": bs["p99_ms"]})
            print(f"block {b} {arm}: {json.dumps(bs)}", file=sys.stderr)
    store_mod.LOCK_RETRY_MAX_S = 0.025
    svc.regime.settings.enabled = True
    out: dict[str, Any] = {
        "worker_args": list(worker_args),
        "arms": {
            a: dict(
                zip(
                    ("worker_code", "client_lock_retry_cap_s", "regime"), ONOFF_ARMS[a], strict=True
                )
            )
            for a in arms
        },
        "old_src": old_src,
        "rounds": blocks,
        "per_block": per_block,
    }
    for arm in arms:
        p99s = [x["p99_ms"] for x in per_block_p[arm]]
        p50s = [x["p50_ms"] for x in per_block_p[arm]]
        out[arm] = {
            **_summary(rows[arm]),
            "blocks": per_block_p[arm],
            "block_p99_min_max_ms": [min(p99s), max(p99s)],
            "block_p50_min_max_ms": [min(p50s), max(p50s)],
            "explained_during_arm": done[arm],
            "explanations_per_s": done[arm] / wall[arm] if wall[arm] else None,
        }
    base = arms[0]
    for arm in arms[1:]:
        out[f"ratio_p50_{arm}_over_{base}"] = out[arm]["p50_ms"] / out[base]["p50_ms"]
        out[f"ratio_p99_{arm}_over_{base}"] = out[arm]["p99_ms"] / out[base]["p99_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--only",
        choices=["regime", "worker", "onoff"],
        help="run one section (default: all); onoff: the fast worker stopped/running A/B",
    )
    ap.add_argument("--home", help="reuse this BQX home (set up once, cached)")
    ap.add_argument("--blocks", type=int, default=6, help="onoff: blocks per arm")
    ap.add_argument("--per-block", type=int, default=300, help="onoff: requests per block")
    ap.add_argument("--worker-args", default="", help="onoff: extra `bqx forensics worker` options")
    ap.add_argument(
        "--arms", default="stopped,running", help=f"onoff: arms, of {','.join(ONOFF_ARMS)}"
    )
    ap.add_argument("--old-src", help="onoff: src/ of the code before the fix (old_* arms)")
    ap.add_argument(
        "--client",
        choices=["inproc", "api"],
        default="inproc",
        help="onoff: in-process PredictionService(live=False) (bars read from the store per "
        "call), or POST /v1/predict to a `bqx serve` of this checkout (bars in memory)",
    )
    a = ap.parse_args()
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "argv": sys.argv[1:],
        "load_avg_start": os.getloadavg(),
    }

    if a.only in (None, "regime"):
        t0 = time.perf_counter()
        out["regime_recovery"] = regime_recovery(
            60, 20, ["EURUSD", "GBPJPY", "AUDNZD", "USDCAD", "GBPAUD", "CADCHF"], 3
        )
        out["regime_recovery"]["seconds"] = time.perf_counter() - t0
        if a.only:
            print(json.dumps(out, indent=1, default=str))
            return

    if a.home:
        home = Path(a.home)
        ready = home / "bench_decision_ready.json"
        if ready.exists():
            from bqx.config import Settings

            s = Settings(home=home)
            s.train.approval_rule = "always"
            shap_ms = json.loads(ready.read_text())
        else:
            home.mkdir(parents=True, exist_ok=True)
            s, shap_ms = setup_home(home, a.days)
            ready.write_text(json.dumps(shap_ms))
    else:
        home = Path(tempfile.mkdtemp(prefix="bqx-bench-decision-"))
        s, shap_ms = setup_home(home, a.days)
    out["shap_ms_per_decision"] = shap_ms

    from bqx.serving.service import PredictionService

    svc = PredictionService(s, live=False)
    art = svc.model("EURUSD")
    bars = svc.store.read("EURUSD")
    stamps = list(pd.DatetimeIndex(bars["ts"])[-600:])
    if a.only is None:
        # one RegimeModel.at (a cache miss)
        from bqx.features.panel import Panel

        panel = Panel.from_bars(svc.store.read_asof(bars["ts"].iloc[-1], 1500))
        t = []
        for i in range(200):
            t0 = time.perf_counter()
            art.regime.at(panel.close[: 1300 + i % 100], panel.ts[: 1300 + i % 100], panel.pairs)
            t.append(time.perf_counter() - t0)
        out["regime_at_ms"] = {"p50": pct(t, 50), "p99": pct(t, 99)}

        def regime_toggle(arm: str) -> None:
            svc.regime.settings.enabled = arm == "A"

        out["predict_regime_on_A_vs_off_B"] = predict_blocks(
            svc, "EURUSD", stamps, regime_toggle, 6
        )
        svc.regime.settings.enabled = True

    # forensics worker running vs stopped (our own processes, SIGSTOP/SIGCONT)
    bt = pd.DatetimeIndex(bars["ts"])
    cont = bt[1:][(bt[1:] - bt[:-1]) == pd.Timedelta(s.interval)]  # not just after a gap
    stamps2 = list(cont[-2400:-600])
    if a.only == "onoff":
        out["cpu_count"] = os.cpu_count()
        out["client"] = a.client
        c0 = time.process_time()
        # from the 1,500th bar on: every decision with a full feature history
        call, proc, onoff_stamps = None, None, list(cont[1500:-600])
        if a.client == "api":
            import httpx

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_serving import _key, _stop, serve

            key = _key(home)
            proc, base = serve(home, 1, src=str(Path(__file__).resolve().parents[1] / "src"))
            http = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
            onoff_stamps = list(cont[-1400:])  # the API's in-memory day: no store reads

            def call(ts: pd.Timestamp) -> None:
                r = http.post("/v1/predict", json={"pair": "EURUSD", "timestamp": ts.isoformat()})
                r.raise_for_status()

            for ts in onoff_stamps[:20]:
                call(ts)  # warm: connection, model, caches
            onoff_stamps = onoff_stamps[20:]
            n_arms = len(a.arms.split(","))
            if a.blocks * n_arms * a.per_block > len(onoff_stamps):
                # a bar asked twice would be a feature-cache hit: keep them all distinct
                raise SystemExit("api client: blocks x arms x per-block must stay < ~1,300")
        try:
            out["predict_worker_onoff"] = worker_onoff(
                svc,
                home,
                onoff_stamps,
                a.blocks,
                a.per_block,
                tuple(a.worker_args.split()),
                arms=tuple(a.arms.split(",")),
                old_src=a.old_src,
                call=call,
            )
        finally:
            if proc is not None:
                _stop(proc)
        out["bench_process_cpu_s"] = time.process_time() - c0
        out["load_avg_end"] = os.getloadavg()
        print(json.dumps(out, indent=1, default=str))
        return
    out["predict_worker_stopped_vs_old_vs_default"] = worker_ab(svc, home, stamps2, 6)
    out["load_avg_end"] = os.getloadavg()
    if a.only == "worker":
        print(json.dumps(out, indent=1, default=str))
        return
    # worker throughput: a fresh batch of decisions explained by run_once
    from bqx.decision.forensics import ForensicsWorker

    for ts in stamps[:100]:
        svc.predict("EURUSD", ts, source="bench")
        svc.predict("USDJPY", ts, source="bench")
    fw = ForensicsWorker(s, state=svc.state)
    fw.run_once()  # warm (model load)
    for ts in stamps[100:200]:
        svc.predict("EURUSD", ts, source="bench")
        svc.predict("USDJPY", ts, source="bench")
    r = fw.run_once()
    bar_s = pd.Timedelta(s.interval).total_seconds()
    out["worker"] = {**r, "needed_per_second_28_pairs": 28 / bar_s}

    # risk check with 28 positions
    from bqx.decision.risk import RiskManager
    from bqx.universe import PAIRS

    rm = RiskManager(s, svc.state, svc.store, ttl_s=3600)
    t0 = time.perf_counter()
    md = rm.market()
    out["risk_market_data_load_ms"] = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(0)
    svc.state.update_portfolio(
        cash=1e6,
        positions=[
            {"pair": p, "quantity": float(rng.integers(-20_000, 20_000)), "avg_price": md.prices[p]}
            for p in PAIRS
        ],
    )
    eng = rm.engine()
    t = []
    for _ in range(200):
        t0 = time.perf_counter()
        eng.var(eng.e)
        t.append(time.perf_counter() - t0)
    out["var_ms"] = {"p50": pct(t, 50), "p95": pct(t, 95), "scenarios": len(md.returns)}
    res: dict[str, list[float]] = {"approved": [], "rejected": []}
    for i in range(300):
        pair = PAIRS[i % 28]
        q = 1000 if i % 2 == 0 else 5_000_000
        t0 = time.perf_counter()
        c = rm.check({"pair": pair, "side": "BUY", "quantity": q})
        res["approved" if c["approved"] else "rejected"].append(time.perf_counter() - t0)
    out["risk_check_ms_28_positions"] = {
        k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)} for k, v in res.items() if v
    }
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
