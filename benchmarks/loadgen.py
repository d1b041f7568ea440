"""A small, bounded HTTP/1.1 load generator (asyncio + raw sockets, uvloop when installed).

Why not httpx: on a 2-core machine the client shares the CPU with the server, and httpx
costs ~1 ms of CPU per request; writing the request bytes and parsing the status line and
``Content-Length`` by hand costs a few microseconds, so the numbers measure the server.

Two modes:

* **fixed rate** (open loop): requests are *scheduled* at ``rate``/s whatever the server
  does, and latency is measured from the scheduled time, so a stall shows up in the tail
  (no coordinated omission). Connections come from a pool (``connections``), kept alive.
* **saturation** (closed loop): ``connections`` clients each send the next request as soon
  as the previous answer arrives; gives the maximum throughput and its latencies.

    python benchmarks/loadgen.py --url http://127.0.0.1:8000/v1/predict --key KEY \
        --body '{"pair": "EURUSD"}' --rate 50 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        n = len(lat)

        def q(p: float) -> float | None:
            return round(lat[min(n - 1, int(p * n))] * 1e3, 3) if n else None

        return {
            "requests": n,
            "req_per_s": round(n / self.elapsed_s, 1) if self.elapsed_s else None,
            "p50_ms": q(0.50),
            "p95_ms": q(0.95),
            "p99_ms": q(0.99),
            "max_ms": round(lat[-1] * 1e3, 3) if n else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
        }


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        line = await self.reader.readuntil(b"\r\n")
        status = int(line.split(b" ", 2)[1])
        length = 0
        while True:
            h = await self.reader.readuntil(b"\r\n")
            if h == b"\r\n":
                break
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if length:
            await self.reader.readexactly(length)
        return status


def build_requests(url: str, bodies: list[dict[str, Any]], key: str | None) -> list[bytes]:
    u = urlsplit(url)
    host = u.netloc
    out = []
    for b in bodies:
        data = json.dumps(b).encode()
        head = (
            f"POST {u.path or '/'} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n"
            + (f"X-API-Key: {key}\r\n" if key else "")
            + "\r\n"
        )
        out.append(head.encode() + data)
    return out


async def _connect(url: str) -> _Conn:
    u = urlsplit(url)
    r, w = await asyncio.open_connection(u.hostname, u.port or 80)
    return _Conn(r, w)


async def fixed_rate(
    url: str, requests: list[bytes], rate: float, duration: float, connections: int = 16
) -> Result:
    """Open loop: one request every 1/rate s; latency from the scheduled send time."""
    res = Result()
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await _connect(url))
    cycle = itertools.cycle(requests)
    n = int(rate * duration)
    t0 = time.perf_counter() + 0.05
    tasks = []

    async def one(at: float, raw: bytes) -> None:
        conn = await pool.get()
        try:
            st = await conn.request(raw)
            res.latencies_s.append(time.perf_counter() - at)
            res.statuses[st] = res.statuses.get(st, 0) + 1
            pool.put_nowait(conn)
        except Exception:
            res.errors += 1
            pool.put_nowait(await _connect(url))

    for i in range(n):
        at = t0 + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, next(cycle))))
    await asyncio.gather(*tasks)
    res.elapsed_s = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().writer.close()
    return res


async def saturate(
    url: str,
    requests: list[bytes],
    duration: float,
    connections: int = 8,
    once: bool = False,
) -> Result:
    """Closed loop: ``connections`` clients back to back for ``duration`` seconds (with
    ``once``: or until every request has been sent once, none repeated)."""
    res = Result()
    stop = time.perf_counter() + duration
    start = time.perf_counter()

    async def client(offset: int) -> None:
        conn = await _connect(url)
        i = offset
        while time.perf_counter() < stop and not (once and i >= len(requests)):
            raw = requests[i % len(requests)]
            i += connections
            t = time.perf_counter()
            try:
                st = await conn.request(raw)
            except Exception:
                res.errors += 1
                conn = await _connect(url)
                continue
            res.latencies_s.append(time.perf_counter() - t)
            res.statuses[st] = res.statuses.get(st, 0) + 1
        conn.writer.close()

    await asyncio.gather(*(client(k) for k in range(connections)))
    res.elapsed_s = time.perf_counter() - start
    return res


def run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key")
    ap.add_argument("--body", action="append", default=[], help="JSON body (repeat to rotate)")
    ap.add_argument("--rate", type=float, default=0.0, help="req/s (0 = saturation)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    reqs = build_requests(a.url, [json.loads(b) for b in (a.body or ['{"pair": "EURUSD"}'])], a.key)
    if a.rate > 0:
        r = run(fixed_rate(a.url, reqs, a.rate, a.duration, max(a.connections, 16)))
    else:
        r = run(saturate(a.url, reqs, a.duration, a.connections))
    print(json.dumps(r.summary(), indent=1))


if __name__ == "__main__":
    main()
