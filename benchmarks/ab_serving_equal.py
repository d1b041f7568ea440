"""Same requests through two codes' apps -> the same responses and decision-log rows
(issue 15 item 4, srvfast). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/ab_serving_equal.py --old-src OLD/src \\
        [--home /tmp/bqx-bench-predfast2] [--bars 300] [--out benchmarks/results/x.json]

Each code runs in its own process (``PYTHONPATH=<its src>``) on the same home (created by
``bench_predict_ab.py`` / ``bench_serving.py``): its FastAPI app is driven in-process over
ASGI (lifespan included, so the decision-log and capture writers run as in ``bqx serve``)
with the same request list: ``--bars`` uncached ``POST /v1/predict`` per pair (distinct
timestamps), cached repeats, and error cases (no key, bad key, unknown pair, bad
timestamp, extra field). For each request the status, content type and JSON body are
kept; each 200's decision-log row is read back after the app shut down (the writer drains
at shutdown), through ``read_decisions`` and as stored (every SQLite column's raw value and
storage class), and so is its captured input row (packed bytes, feature-set names). Compared: everything except what the clock or a random draw sets
(``decision_id``, ``latency_ms``, ``request_time``; a capture's ``captured_at``). The
requests start after the service's first maintenance tick (which clears the per-bar caches
once), so which repeats are cache hits does not depend on the code's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLOCK = ("decision_id", "latency_ms", "request_time")


def _requests(home: Path, bars: int) -> list[tuple[dict[str, str], bytes]]:
    import bench_serving as bs

    out: list[tuple[dict[str, str], bytes]] = []
    for pair in (bs.RF_PAIR, bs.LGB_PAIR):
        ts = bs._timestamps(home, pair, 1400)[:-1][-bars:]
        for t in ts:
            out.append(({}, json.dumps({"pair": pair, "timestamp": t}).encode()))
        for t in ts[:5]:  # cached repeats
            out.append(({}, json.dumps({"pair": pair, "timestamp": t}).encode()))
        out.append(({}, json.dumps({"pair": pair}).encode()))
        out.append(({}, json.dumps({"pair": pair.lower(), "strict": True}).encode()))
    out.append(({"key": ""}, json.dumps({"pair": "EURUSD"}).encode()))
    out.append(({"key": "bqx_nope_nope"}, json.dumps({"pair": "EURUSD"}).encode()))
    out.append(({}, json.dumps({"pair": "XXXYYY"}).encode()))
    out.append(({}, json.dumps({"pair": "EURUSD", "timestamp": "not a time"}).encode()))
    out.append(({}, json.dumps({"pair": "EURUSD", "bogus": 1}).encode()))
    out.append(({}, b"{not json"))
    return out


def worker(home: Path, bars: int, key: str) -> None:
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    os.environ["BQX_HOME"] = str(home)
    os.environ["BQX_SERVE__PREWARM"] = json.dumps([bs.RF_PAIR, bs.LGB_PAIR])
    from bqx.config import load_settings
    from bqx.serving.app import create_app
    from bqx.state import open_state

    settings = load_settings()
    app = create_app(settings)
    reqs = _requests(home, bars)

    async def call(hdr: dict[str, str], body: bytes) -> dict[str, Any]:
        k = hdr.get("key", key)
        headers = [(b"host", b"x"), (b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(body)).encode())]
        if k:
            headers.append((b"x-api-key", k.encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/predict",
            "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "state": {},
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {}

        msgs: list[dict[str, Any]] = []

        async def send(m: dict[str, Any]) -> None:
            msgs.append(m)

        await app(scope, receive, send)
        hd = {k.decode(): v.decode() for k, v in msgs[0]["headers"]}
        return {
            "status": msgs[0]["status"],
            "content_type": hd.get("content-type"),
            "headers": sorted(k for k in hd if k != "content-length"),
            "body": json.loads(b"".join(m.get("body", b"") for m in msgs[1:])),
        }

    async def run() -> list[dict[str, Any]]:
        out = []
        async with app.router.lifespan_context(app):
            # the first maintenance tick clears the per-bar caches once (it has not seen
            # the bar cache's generation yet); in-process, back-to-back requests give the
            # loop a turn only where something really suspends, so when that tick runs -
            # and which repeats are cache hits - would depend on the code's speed. Let it
            # run first (both codes have this tick).
            svc = app.state.ctx.service
            for _ in range(200):
                snap = svc.bars.snapshot if svc.bars is not None else None
                if snap is not None and svc._generation_seen == snap.generation:
                    break
                await asyncio.sleep(0.05)
            for hdr, body in reqs:
                out.append(await call(hdr, body))
        return out

    res = asyncio.run(run())
    ids = [r["body"]["decision_id"] for r in res if r["status"] == 200]
    st = open_state(settings)
    df = st.read_decisions(["EURUSD", "USDJPY"])
    df = df[df["decision_id"].isin(set(ids))].set_index("decision_id")
    rows = []
    for i in ids:
        row = df.loc[i].to_dict()
        rows.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
    # as stored (SQLite): every column's raw value and storage class, decisions and their
    # captured inputs (packed bytes as hex, the feature-set name lists), same id order
    import sqlite3

    con = sqlite3.connect(str(st.engine.url.database))
    p = st.t.decisions.name[: -len("decisions")]

    def raw(table: str, col: str) -> list[dict[str, Any]]:
        cur = con.execute(f"SELECT * FROM {p}{table} WHERE {col} IN (SELECT value FROM "
                          "json_each(?))", (json.dumps(ids),))  # fmt: skip
        names = [d[0] for d in cur.description]
        by = {r[names.index(col)]: r for r in cur.fetchall()}
        out = []
        for i in ids:
            r = by.get(i)
            if r is None:
                out.append({"missing": True})
                continue
            out.append({
                n: [type(v).__name__, v.hex() if isinstance(v, bytes) else v]
                for n, v in zip(names, r, strict=True)
                if n not in ("decision_id", "latency_ms", "request_time", "captured_at")
            })  # fmt: skip
        return out

    caps = raw("captures", "decision_id")
    keys = sorted({c["feature_set"][1] for c in caps if "feature_set" in c})
    sets = {k: con.execute(f"SELECT names FROM {p}capture_feature_sets WHERE key = ?", (k,))
            .fetchone()[0] for k in keys}  # fmt: skip
    out = {"responses": res, "rows": rows, "stored_rows": raw("decisions", "decision_id")}
    out |= {"captures": caps, "feature_sets": [sets]}
    print(json.dumps(out, default=repr))


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in CLOCK}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    if isinstance(x, float):
        return x.hex()
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src")
    ap.add_argument("--new-src")
    ap.add_argument("--home", default="/tmp/bqx-bench-predfast2")
    ap.add_argument("--bars", type=int, default=300)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    a = ap.parse_args()
    home = Path(a.home)
    if a.worker:
        worker(home, a.bars, a.key)
        return
    if not a.old_src:
        ap.error("--old-src is required")
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    key = bs._key(home)
    new_src = a.new_src or str(HERE.parent / "src")
    got: dict[str, Any] = {}
    for name, src in (("old", a.old_src), ("new", new_src)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
        env.update({"PYTHONPATH": f"{src}:{HERE}", "OPENBLAS_NUM_THREADS": "1"})
        cmd = [sys.executable, __file__, "--worker", "--home", str(home), "--bars", str(a.bars)]
        cmd += ["--key", key]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        got[name] = json.loads(p.stdout.strip().splitlines()[-1])
    diffs = []
    for part in ("responses", "rows", "stored_rows", "captures", "feature_sets"):
        o, n = _strip(got["old"][part]), _strip(got["new"][part])
        if len(o) != len(n):
            diffs.append({"part": part, "lengths": [len(o), len(n)]})
        for i, (x, y) in enumerate(zip(o, n, strict=False)):
            if x != y:
                diffs.append({"part": part, "index": i, "old": x, "new": y})
    statuses: dict[str, int] = {}
    for r in got["new"]["responses"]:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    out = {
        "old_src": a.old_src,
        "new_src": new_src,
        "requests": len(got["new"]["responses"]),
        "statuses": statuses,
        "decision_rows_compared": len(got["new"]["rows"]),
        "stored_rows_compared": len(got["new"]["stored_rows"]),
        "captures_compared": sum(1 for c in got["new"]["captures"] if "missing" not in c),
        "feature_sets_compared": len(got["new"]["feature_sets"][0]),
        "ignored_fields": list(CLOCK),
        "identical": not diffs,
        "differences": diffs[:20],
    }
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
