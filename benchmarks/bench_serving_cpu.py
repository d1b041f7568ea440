"""Where an uncached ``POST /v1/predict`` spends its CPU, per thread, old vs new code
(issue 15 item 4, srvfast). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_serving_cpu.py --old-src OLD/src \\
        [--home /tmp/bqx-bench-predfast2] [--requests 400] [--rounds 2] [--out FILE]

No sockets: each code runs in its own process (``PYTHONPATH=<its src>``) and drives its
FastAPI app over ASGI in-process, lifespan included (decision-log and capture writers,
maintenance ticks, as in ``bqx serve``), one request at a time. Per request and pair:
``--requests`` distinct bars (uncached: no feature or prediction cache hit) and as many
repeats of the newest bar (cached). CPU per request (ms) from the thread clocks:

* ``main``: the event-loop thread (``time.thread_time``), split into ``at_array`` (the
  feature computation), ``predict_other`` (the rest of ``PredictionService.predict``:
  model, interval, signal, hash, decision-log and capture hand-offs, metrics) and
  ``http`` (everything outside ``predict``: ASGI middlewares, routing, body parsing and
  validation, authentication, rate limit, the JSON response);
* ``threads``: every thread's user + system time from ``/proc/self/task`` (10 ms ticks;
  decision-log writer, capture writer, AnyIO worker threads), including 0.5 s after the
  last request so the writers' last batches are counted.

uvicorn's HTTP parsing and socket I/O are not in these figures (``bench_predict_ab.py``'s
HTTP part has them). Rounds alternate which code goes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _threads_cpu() -> dict[int, tuple[str, float]]:
    """{thread id: (name, user + system CPU seconds)} of this process's live threads."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for d in Path("/proc/self/task").iterdir():
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        nm = names.get(int(d.name), "other")
        if nm.startswith("AnyIO worker"):
            nm = "anyio-workers"
        out[int(d.name)] = (nm, (int(f[11]) + int(f[12])) / tick)
    return out


def _delta(a: dict[int, tuple[str, float]], b: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per thread name between two snapshots (threads that started in between
    count from 0; the time of threads that ended in between is lost: AnyIO's idle workers)."""
    out: dict[str, float] = {}
    for tid, (nm, v) in b.items():
        out[nm] = out.get(nm, 0.0) + v - (a[tid][1] if tid in a else 0.0)
    return out


def worker(home: Path, n: int, key: str) -> None:
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    os.environ["BQX_HOME"] = str(home)
    os.environ["BQX_SERVE__PREWARM"] = json.dumps([bs.RF_PAIR, bs.LGB_PAIR])
    import bqx.serving.service as S
    from bqx.config import load_settings
    from bqx.serving.app import create_app

    app = create_app(load_settings())
    pairs = (bs.RF_PAIR, bs.LGB_PAIR)
    ts = {p: bs._timestamps(home, p, 1400)[:-1] for p in pairs}
    acc = {"predict": 0.0, "at_array": 0.0}
    tt = time.thread_time

    async def call(body: bytes) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/predict",
            "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                        (b"x-api-key", key.encode()),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {}

        status = []

        async def send(m: dict[str, Any]) -> None:
            if m["type"] == "http.response.start":
                status.append(m["status"])

        await app(scope, receive, send)
        assert status == [200], status

    async def run() -> None:
        async with app.router.lifespan_context(app):
            svc = app.state.ctx.service
            # the feature computation: at_row since session 15, at_array before
            at_name = "at_row" if hasattr(S, "at_row") else "at_array"
            real_predict, real_at = svc.predict, getattr(S, at_name)

            def predict(*a: Any, **k: Any) -> Any:
                c0 = tt()
                try:
                    return real_predict(*a, **k)
                finally:
                    acc["predict"] += tt() - c0

            def at_array(*a: Any, **k: Any) -> Any:
                c0 = tt()
                try:
                    return real_at(*a, **k)
                finally:
                    acc["at_array"] += tt() - c0

            svc.predict = predict
            setattr(S, at_name, at_array)
            for p in pairs:
                await call(json.dumps({"pair": p}).encode())
            print(json.dumps({"ready": True}), flush=True)
            for line in sys.stdin:  # "<start index>": one block of n requests per pair/kind
                start = int(line)
                res: dict[str, Any] = {}
                for p in pairs:
                    for kind in ("uncached", "cached"):
                        if kind == "uncached":
                            bodies = [
                                json.dumps({"pair": p, "timestamp": t}).encode()
                                for t in ts[p][start : start + n]
                            ]
                        else:
                            bodies = [json.dumps({"pair": p}).encode()] * n
                        acc["predict"] = acc["at_array"] = 0.0
                        th0, c0 = _threads_cpu(), tt()
                        for b in bodies:
                            await call(b)
                        main = tt() - c0
                        await asyncio.sleep(0.5)  # the writers' last batches
                        th = _delta(th0, _threads_cpu())
                        k = len(bodies)
                        res[f"{p}_{kind}"] = {
                            "requests": k,
                            "main": main * 1e3 / k,
                            "at_array": acc["at_array"] * 1e3 / k,
                            "predict_other": (acc["predict"] - acc["at_array"]) * 1e3 / k,
                            "http": (main - acc["predict"]) * 1e3 / k,
                            "threads": {t: v * 1e3 / k for t, v in th.items() if t != "MainThread"},
                            "all_threads": sum(th.values()) * 1e3 / k,
                        }
                print(json.dumps(res), flush=True)

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src")
    ap.add_argument("--new-src")
    ap.add_argument("--home", default="/tmp/bqx-bench-predfast2")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    a = ap.parse_args()
    home = Path(a.home)
    if a.worker:
        worker(home, a.requests, a.key)
        return
    if not a.old_src:
        ap.error("--old-src is required")
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    key = bs._key(home)
    srcs = {"old": a.old_src, "new": a.new_src or str(HERE.parent / "src")}
    procs = {}
    for name, src in srcs.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
        env.update({"PYTHONPATH": f"{src}:{HERE}", "OPENBLAS_NUM_THREADS": "1"})
        cmd = [sys.executable, __file__, "--worker", "--home", str(home)]
        cmd += ["--requests", str(a.requests), "--key", key]
        procs[name] = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    for p in procs.values():
        assert json.loads(p.stdout.readline())["ready"]  # type: ignore[union-attr]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "srcs": srcs,
        "requests_per_block": a.requests,
        "rounds": [],
    }
    for r in range(a.rounds):
        start = r * a.requests
        row: dict[str, Any] = {"load_avg_1m_before": round(os.getloadavg()[0], 2)}
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            p = procs[name]
            p.stdin.write(f"{start}\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
            row[name] = json.loads(p.stdout.readline())  # type: ignore[union-attr]
        row["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
        out["rounds"].append(row)
        print(json.dumps(row), file=sys.stderr)
    for p in procs.values():
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(timeout=120)
    med: dict[str, Any] = {}
    for name in srcs:
        for case in out["rounds"][0][name]:
            rows = [x[name][case] for x in out["rounds"]]
            m = {
                f: round(float(np.median([x[f] for x in rows])), 4)
                for f in ("main", "at_array", "predict_other", "http", "all_threads")
            }
            names = sorted({t for x in rows for t in x["threads"]})
            m["threads"] = {
                t: round(float(np.median([x["threads"].get(t, 0.0) for x in rows])), 4)
                for t in names
            }
            med[f"{name}_{case}"] = m
    out["median_ms_per_request"] = med
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
