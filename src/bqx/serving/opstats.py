"""Per-route request statistics flushed to the state DB for monitoring's operational rules.

Why not have the monitoring pass scrape ``/metrics``: behind a load balancer a scrape
reaches one replica at random, the pass would need the list of replica addresses (which
changes with scaling and restarts), and with ``--workers N`` outside multiprocess mode a
scrape sees one worker. Instead every serving process writes what it served since its last
flush into the shared state DB (``service_stats``) - the database every replica already
writes its decisions to - and the pass sums the rows of all instances. Counts and
histogram buckets add up exactly across replicas (quantiles would not), so the 5xx rate
and the p99 the rules see are those of the whole service. The request path only does a
dict update under a lock (about a microsecond); the write happens in the service's
maintenance loop, off the event loop.
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import threading
from typing import Any

from bqx.serving.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)


def default_instance() -> str:
    """``host:pid`` - one row stream per serving process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RequestStats:
    """Accumulates requests per route template until :meth:`flush` writes them."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or default_instance()
        self._lock = threading.Lock()
        self._acc: dict[str, list[Any]] = {}
        self.flush_errors = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request (``route``: the route template)."""
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # bucket: le=LATENCY_BUCKETS[i]
        with self._lock:
            a = self._acc.get(route)
            if a is None:
                a = self._acc[route] = [0, 0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
            a[0] += 1
            a[1] += status >= 500
            a[2] += seconds
            a[3][i] += 1

    def drain(self) -> dict[str, list[Any]]:
        with self._lock:
            acc, self._acc = self._acc, {}
        return acc

    def _merge_back(self, acc: dict[str, list[Any]]) -> None:
        with self._lock:
            for route, (n, e, s, b) in acc.items():
                a = self._acc.setdefault(route, [0, 0, 0.0, [0] * len(b)])
                a[0] += n
                a[1] += e
                a[2] += s
                a[3] = [x + y for x, y in zip(a[3], b, strict=True)]

    def flush(self, state: Any, at: Any = None) -> int:
        """Write what was served since the last flush (one row per route). On a state-DB
        error the counts are kept for the next flush (nothing lost, never raises)."""
        from bqx.state._base import utcnow

        acc = self.drain()
        if not acc:
            return 0
        when = at if at is not None else utcnow()
        rows = [
            {
                "instance": self.instance,
                "at": when,
                "route": route,
                "requests": n,
                "errors_5xx": e,
                "seconds_sum": s,
                "buckets": b,
            }
            for route, (n, e, s, b) in acc.items()
        ]
        try:
            return int(state.write_service_stats(rows))
        except Exception as ex:
            self.flush_errors += 1
            self._merge_back(acc)
            log.warning("request stats not flushed (kept for the next flush): %s", ex)
            return 0
