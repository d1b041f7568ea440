"""Send the demo's traffic through the live API, so that /dashboard is not empty.

    python scripts/demo_traffic.py --url http://127.0.0.1:8000 --key KEY --end 2024-03-21T10:00Z

For each pair, ``--n`` forecasts at bars spaced ``--every`` minutes before ``--end`` (batches of
at most 100, the API's limit) plus ``--live`` forecasts at the newest bar, one request each.
Every forecast is logged and its model inputs captured like any served one, so the next
monitoring pass (``bqx monitor run --as-of END``) has matured decisions for live quality and
captured inputs for drift; the requests themselves feed the invocation, latency and error
charts. Prints one line of counts; exits 1 if the API refused the key.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx
import pandas as pd


def _post(c: httpx.Client, path: str, body: dict, tries: int = 20) -> httpx.Response:
    """POST, waiting out the key's rate limit (429 + Retry-After) as a polite client does:
    a batch of 100 items spends 100 of the key's tokens at once."""
    for _ in range(tries):
        r = c.post(path, json=body)
        if r.status_code != 429:
            return r
        time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 5.0))
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--end", required=True, help="the last as-of bar of the historical requests")
    ap.add_argument("--pairs", default="EURUSD,USDJPY,GBPUSD,AUDUSD,USDCHF,USDCAD")
    ap.add_argument("--n", type=int, default=60, help="historical forecasts per pair")
    ap.add_argument("--every", type=int, default=5, help="minutes between them")
    ap.add_argument("--live", type=int, default=20, help="single forecasts at the newest bar")
    a = ap.parse_args(argv)
    end = pd.Timestamp(a.end)
    pairs = [p.strip().upper() for p in a.pairs.split(",") if p.strip()]
    items = [
        {"pair": p, "timestamp": (end - pd.Timedelta(minutes=a.every * k)).isoformat()}
        for p in pairs
        for k in range(a.n)
    ]
    ok = failed = 0
    with httpx.Client(base_url=a.url, headers={"X-API-Key": a.key}, timeout=120) as c:
        for i in range(0, len(items), 100):
            r = _post(c, "/v1/predict/batch", {"items": items[i : i + 100]})
            if r.status_code in (401, 403):
                print(f"the API refused the key ({r.status_code})", file=sys.stderr)
                return 1
            r.raise_for_status()
            body = r.json()
            ok += body["count"] - body["failed"]
            failed += body["failed"]
        for k in range(a.live):
            r = _post(c, "/v1/predict", {"pair": pairs[k % len(pairs)]})
            ok += r.status_code == 200
            failed += r.status_code != 200
    print(f"demo traffic: {ok} forecasts served, {failed} refused, {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
