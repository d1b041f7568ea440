"""Rollout / operator benchmark (issue 13 "Must show"). Prints JSON.

    .venv/bin/python benchmarks/bench_rollout.py [--home DIR] [--only routing,failover,follow,ab]

* ``routing``: cost of the router on ``POST /v1/predict`` (in-process ASGI client, the
  newest bar, so features and model outputs come from the per-bar caches and the router's
  work is what differs): p50/p99 with no rollout, a 50 % canary, the canary with shadow
  calls for the production-answered half, and shadow; the modes alternate in rounds so
  machine load hits them alike. Also ``service.predict`` alone (no HTTP).
* ``failover``: two real ``bqx ops run`` processes on one state DB (SQLite, and PostgreSQL
  when reachable); SIGKILL the leader; seconds until the standby holds the lease (TTL 2 s,
  tick 0.25 s), 3 repetitions.
* ``follow``: two real servers on one home (``bqx serve --workers 2`` and a second
  ``bqx serve``; ``follow_one_server``: the ``--workers 2`` server alone); a blue/green
  (100 %) rollout is started and later aborted by writing the state DB (as the CLI/operator
  do); clients poll without pause, a fresh connection per request so every worker answers
  (``X-BQX-Worker`` says which); seconds from the state-DB write (the transition's
  ``updated_at``) until the last response from the old arm, per worker and the max (i.e.
  until *every* worker of every server follows), and the same from the start of the
  command (which includes the caller's own work: a fresh process's first ``start``
  imports the feature pipeline for the feature-set check); ``serve.rollout_refresh_s`` =
  1 s (the default).
* ``ab``: calibration of P(B > A) > q under the null and power with a planted effect.

Setup (cached in ``--home``): 6 simulated days of the 28 pairs; EURUSD ridge v1
(production) and v2 (approved).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BQX = str(Path(sys.executable).parent / "bqx")
PAIR = "EURUSD"


def setup(home: Path) -> None:
    marker = home / "bench_ready.json"
    if marker.exists():
        return
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.ensure_home()
    bars = generate(days=6, pairs=None, seed=5, signal_strength=0.2).bars
    st = open_store(settings=s)
    st.upsert(bars)
    st.close()
    reg = Registry(s)
    df = F.build(bars, PAIR, with_target=True)
    for i, params in enumerate((None, {"alpha": 1e4})):
        r = train_frame(PAIR, df, s, model="ridge", params=params, selection_rows=3000, n_jobs=1)
        v = reg.log_and_register(r)
        if i == 0:
            reg.promote(PAIR, v, actor="bench", reason="benchmark")
    marker.write_text("{}")


def _q(x: list[float]) -> dict[str, float]:
    a = np.asarray(x)
    return {"p50_ms": round(float(np.quantile(a, 0.5)), 3),
            "p99_ms": round(float(np.quantile(a, 0.99)), 3), "n": len(a)}  # fmt: skip


def routing(home: Path, rounds: int = 20, per: int = 100) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from bqx.config import Settings
    from bqx.rollout.machine import RolloutManager
    from bqx.serving.app import create_app
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    s = Settings(home=home)
    s.serve.rate_limit = 1e6
    keys = [ApiKeys(open_state(s)).create_key("reader", rate=1e6)[1] for _ in range(20)]
    modes = ("none", "canary", "canary+shadow", "shadow")
    lat: dict[str, list[float]] = {m: [] for m in modes}
    svc_lat: dict[str, list[float]] = {m: [] for m in modes}
    #: per round, p50 of the mode minus p50 of "none" in the same round (paired in time)
    dif: dict[str, list[float]] = {m: [] for m in modes[1:]}
    with TestClient(create_app(s)) as api:
        svc = api.app.state.ctx.service  # type: ignore[attr-defined]
        m = RolloutManager(s, state=svc.state, registry=svc.registry, store=svc.store)
        if m.active(PAIR):
            m.abort(PAIR, reason="bench reset")

        def mode(name: str) -> None:
            if m.active(PAIR):
                m.abort(PAIR, reason="bench")
            if name.startswith("canary"):
                s.rollout.shadow_during_canary = name == "canary+shadow"
                m.start(PAIR, "2", steps=[0.5], skip_shadow=True, reason="bench")
            elif name == "shadow":
                m.start(PAIR, "2", reason="bench")
            svc.router.refresh()

        for _ in range(2):  # warm caches of both versions
            for name in lat:
                mode(name)
                for k in keys:
                    api.post("/v1/predict", json={"pair": PAIR}, headers={"X-API-Key": k})
        for _r in range(rounds):
            p50: dict[str, float] = {}
            for name in lat:
                mode(name)
                n0 = len(lat[name])
                for i in range(per):
                    k = keys[i % len(keys)]
                    t0 = time.perf_counter()
                    r = api.post("/v1/predict", json={"pair": PAIR}, headers={"X-API-Key": k})
                    lat[name].append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                    t0 = time.perf_counter()
                    svc.predict(PAIR, key_id=f"k{i % 20}")
                    svc_lat[name].append((time.perf_counter() - t0) * 1000)
                svc.flush()
                p50[name] = float(np.median(lat[name][n0:]))
            for k in dif:
                dif[k].append(p50[k] - p50["none"])
        mode("none")
    out: dict[str, Any] = {"api": {k: _q(v) for k, v in lat.items()},
                           "service_predict": {k: _q(v) for k, v in svc_lat.items()}}  # fmt: skip
    for part in ("api", "service_predict"):
        base = out[part]["none"]
        for k in modes[1:]:
            out[part][k]["added_p50_ms"] = round(out[part][k]["p50_ms"] - base["p50_ms"], 3)
            out[part][k]["p99_ratio"] = round(out[part][k]["p99_ms"] / base["p99_ms"], 2)
    for k, d in dif.items():
        out["api"][k]["added_p50_ms_median_of_rounds"] = round(float(np.median(d)), 3)
    return out


def _pg_url() -> str | None:
    url = os.environ.get("BQX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return url
    except Exception:
        return None


def failover(home: Path, reps: int = 3, ttl: float = 2.0, tick: float = 0.25) -> dict[str, Any]:
    from bqx.state import StateDB

    out: dict[str, Any] = {"ttl_s": ttl, "tick_s": tick}
    urls = {"sqlite": f"sqlite:///{home / f'lease-{uuid.uuid4().hex[:6]}.db'}"}
    pg = _pg_url()
    dbname = None
    if pg is not None:
        import psycopg

        dbname = f"bqx_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {dbname}")
        urls["postgresql"] = pg.rsplit("/", 1)[0] + "/" + dbname
    try:
        for backend, url in urls.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
            env.update(BQX_HOME=str(home / "ops"), BQX_STATE_URL=url,
                       BQX_OPS__LEASE_TTL_S=str(ttl), BQX_OPS__TICK_S=str(tick),
                       BQX_OPS__PAIRS="[]", BQX_OPS__MONITOR_EVERY_S="3600",
                       BQX_OPS__RETRAIN_EVERY_DAYS="0")  # fmt: skip
            times = _failover_runs(StateDB(url), env, reps, ttl)
            out[backend] = {"failover_s": times, "max_s": max(times)}
    finally:
        if dbname is not None and pg is not None:
            import psycopg

            with psycopg.connect(pg, autocommit=True) as con:
                con.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    return out


def _failover_runs(st: Any, env: dict[str, str], reps: int, ttl: float) -> list[float]:
    def holder() -> int | None:
        i = st.lease_info("operator")
        return int(i["holder"].split(":")[1]) if i and i["live"] else None

    times = []
    procs = [_op(env)]
    _until(lambda: holder() == procs[0].pid, 60)
    for _ in range(reps):
        procs.append(_op(env))
        time.sleep(ttl + 1)
        leader = next(p for p in procs if p.pid == holder())
        os.kill(leader.pid, signal.SIGKILL)
        t0 = time.monotonic()
        leader.wait()
        procs.remove(leader)
        assert _until(lambda: holder() == procs[0].pid, ttl + 10)
        times.append(round(time.monotonic() - t0, 2))
    for p in procs:
        p.terminate()
        p.wait(15)
    return times


def _op(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([BQX, "ops", "run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _until(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def follow(home: Path, workers: tuple[int, ...] = (2, 1), reps: int = 3) -> dict[str, Any]:
    import httpx

    from bqx.config import Settings
    from bqx.rollout.machine import RolloutManager
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    s = Settings(home=home)
    key = ApiKeys(open_state(s)).create_key("reader", rate=1e6)[1]
    m = RolloutManager(s)  # fresh: its first start() imports the feature pipeline (as a CLI)
    if m.active(PAIR):
        m.abort(PAIR, reason="bench reset")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(BQX_HOME=str(home), BQX_SERVE__RATE_LIMIT="1000000")
    bases, procs = [], []
    t_start = time.monotonic()
    for w in workers:  # servers on one home / state DB
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        procs.append(subprocess.Popen(
            [BQX, "serve", "--port", str(port), "--workers", str(w)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        bases.append(f"http://127.0.0.1:{port}")
    #: (wall time received, arm, worker) of every answer
    seen: list[tuple[float, str, str]] = []
    stop = threading.Event()
    try:
        for base in bases:
            assert _until(lambda b=base: _ok(b), 300), "server did not start"
        started_s = round(time.monotonic() - t_start, 1)

        def poll(base: str) -> None:
            # a fresh connection per request, so the kernel spreads them over the workers
            lim = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=base, headers={"X-API-Key": key}, limits=lim) as c:
                while not stop.is_set():
                    r = c.post("/v1/predict", json={"pair": PAIR})
                    seen.append((time.time(), r.json().get("arm", "?"),
                                 r.headers.get("X-BQX-Worker", "?")))  # fmt: skip

        ths = [threading.Thread(target=poll, args=(b,), daemon=True) for b in bases * 2]
        for t in ths:
            t.start()
        n_workers = sum(workers)
        # every worker answering (servers older than the X-BQX-Worker header: "?")
        _until(lambda: len({w for _, _, w in seen} - {"?"}) >= n_workers, 60)
        time.sleep(2)
        res = []
        for _ in range(reps):
            for action, old in (("start", "production"), ("abort", "candidate")):
                t_cmd = time.time()
                if action == "start":
                    ro = m.start(PAIR, "2", kind="bluegreen", skip_shadow=True, reason="bench")
                else:
                    ro = m.abort(PAIR, reason="bench")
                t_write = ro["updated_at"].timestamp()  # the state-DB transition's time
                time.sleep(s.serve.rollout_refresh_s * 3 + 1)
                rows = [(t, a, w) for t, a, w in seen if t >= t_write]
                last_old: dict[str, float] = {}
                for t, a, w in rows:
                    if a == old:
                        last_old[w] = max(last_old.get(w, t_write), t)
                per = {w: round(last_old.get(w, t_write) - t_write, 3)
                       for w in {w for _, _, w in rows}}  # fmt: skip
                res.append({
                    "change": action,
                    "all_workers_followed_s": max(per.values(), default=0.0),
                    "per_worker_s": per,
                    "command_s": round(t_write - t_cmd, 3),
                    "from_command_s": round(max(per.values(), default=0.0) + t_write - t_cmd, 3),
                    "requests_in_window": len(rows),
                })  # fmt: skip
        stop.set()
        for t in ths:
            t.join(10)
    finally:
        stop.set()
        for p in procs:
            p.terminate()
            p.wait(30)
    return {
        "servers": " + ".join(f"--workers {w}" for w in workers),
        "worker_processes": sum(workers),
        "started_s": started_s,
        "rollout_refresh_s": s.serve.rollout_refresh_s,
        "changes": res,
        "max_s": max(r["all_workers_followed_s"] for r in res),
        "max_from_command_s": max(r["from_command_s"] for r in res),
    }


def _ok(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def ab() -> dict[str, Any]:
    from bqx.rollout.experiments import calibration

    rows = []
    for n, h in ((1500, 60), (3000, 30), (6000, 60)):
        rows.append(calibration(n_sims=300, n=n, horizon=h, effect=0.0, seed=1))
    for eff in (0.25, 0.5):
        rows.append(calibration(n_sims=100, n=3000, horizon=30, effect=eff, seed=2))
    return {"table": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path(".bqx-bench-rollout"))
    ap.add_argument("--only", default="routing,failover,follow_one_server,follow,ab")
    a = ap.parse_args()
    a.home = a.home.resolve()
    setup(a.home)
    out: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    for part in a.only.split(","):
        t0 = time.perf_counter()
        if part == "routing":
            out[part] = routing(a.home)
        elif part == "failover":
            out[part] = failover(a.home)
        elif part == "follow":
            out[part] = follow(a.home)
        elif part == "follow_one_server":
            out[part] = follow(a.home, workers=(2,))
        elif part == "ab":
            out[part] = ab()
        out[part]["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({part: out[part]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
