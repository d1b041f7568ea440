"""Prometheus metrics of the prediction service.

One :class:`ServiceMetrics` per app, created by :func:`create_metrics` with its own
:class:`~prometheus_client.CollectorRegistry` (not the global default registry), so tests
and several app instances in one process do not collide ("Duplicated timeseries").

Metric names (all prefixed ``bqx_``):

==========================================  =========  =================================
``bqx_http_requests_total``                 counter    route, method, status
``bqx_http_request_duration_seconds``       histogram  route, method (1 ms .. 1 s buckets)
``bqx_http_requests_in_flight``             gauge
``bqx_model_cache_hits_total``              counter
``bqx_model_cache_misses_total``            counter
``bqx_model_cache_evictions_total``         counter
``bqx_model_load_seconds``                  histogram  (10 ms .. 60 s)
``bqx_predictions_total``                   counter    pair, signal
``bqx_feature_seconds``                     histogram  (0.25 ms .. 0.5 s)
``bqx_rate_limited_total``                  counter
``bqx_rate_limit_backend_errors_total``     counter    (Redis unreachable: per-worker fallback)
``bqx_auth_failures_total``                 counter    reason (missing|invalid|forbidden)
``bqx_decision_log_errors_total``           counter
==========================================  =========  =================================

``route`` must be the route *template* (``/v1/features/{pair}``), never the raw path:
raw paths make one time series per URL (unbounded cardinality). Unmatched paths should be
reported as route ``"unmatched"``.

Several workers (``bqx serve --workers N``): each uvicorn worker is its own process with
its own counters, and a scrape reaches one of them at random. prometheus_client's
multiprocess mode fixes this: every process writes its values to mmap files in a shared
directory and ``/metrics`` aggregates the directory. The mode is chosen when
prometheus_client is *imported*, from ``PROMETHEUS_MULTIPROC_DIR``, so ``bqx serve`` must,
in the parent before starting uvicorn::

    if workers > 1:
        d = settings.home / "prometheus"          # or a tempfile.mkdtemp()
        prepare_multiprocess_dir(d)               # create it and delete stale files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d)
    uvicorn.run("bqx.serving.app:create_app", factory=True, workers=workers, ...)

(uvicorn starts workers with ``spawn``, which inherits the environment and imports
everything afresh.) With one worker nothing needs to be set. In multiprocess mode
:func:`create_metrics` returns one shared instance per process (two instances would
overwrite each other's files) and :func:`render_latest` aggregates the directory.
Limits of the mode: the in-flight gauge uses ``livesum``, and uvicorn has no hook to call
:func:`mark_worker_dead` when it replaces a crashed worker, so a crashed worker's
in-flight count lingers until restart; counters of dead workers are kept (correct for
counters).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _prom_values
from prometheus_client.registry import Collector

from bqx.serving.buckets import LATENCY_BUCKETS  # re-exported (its home before)

log = logging.getLogger(__name__)

ENV_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"

#: Feature computation on the request path: sub-millisecond to half a second.
FEATURE_BUCKETS: tuple[float, ...] = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
)
#: Model load (deserialise from the registry): tens of milliseconds to a minute.
LOAD_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_enabled() -> bool:
    """True when metric values go to ``PROMETHEUS_MULTIPROC_DIR`` files.

    Requires the variable to have been set before prometheus_client was imported; if it
    was set later, values stay in memory and a warning is logged once.
    """
    env = os.environ.get(ENV_MULTIPROC)
    active = bool(getattr(_prom_values.ValueClass, "_multiprocess", False))
    if env and not active:
        _warn_late_env()
    return active and bool(env)


_warned = False


def _warn_late_env() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "%s is set but prometheus_client was imported before it was: metrics are "
            "per process; set it before starting the server",
            ENV_MULTIPROC,
        )


def prepare_multiprocess_dir(path: str | Path) -> Path:
    """Create ``path`` and delete files left by a previous run (call it in the parent,
    before workers start; stale files would otherwise be summed into new counters)."""
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


def mark_worker_dead(pid: int) -> None:
    """Tell multiprocess mode a worker died (drops its live gauge files)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


@dataclass(frozen=True)
class ServiceMetrics:
    """The service's metrics. Use the helpers or the metric objects directly."""

    registry: CollectorRegistry
    multiprocess: bool
    requests: Counter
    latency: Histogram
    in_flight: Gauge
    model_cache_hits: Counter
    model_cache_misses: Counter
    model_cache_evictions: Counter
    model_load_seconds: Histogram
    predictions: Counter
    feature_seconds: Histogram
    rate_limited: Counter
    rate_limit_backend_errors: Counter
    auth_failures: Counter
    decision_log_errors: Counter
    #: Collectors rendered beside the service metrics (e.g. the monitoring gauges, which
    #: read the state DB): registered here so that multiprocess mode renders them too.
    extra_collectors: list[Collector] = field(default_factory=list)
    #: labelled children already looked up (``labels()`` returns the same child for the
    #: same values while nobody removes it; these metrics' children are never removed):
    #: a dict lookup instead of prometheus_client's label checks and lock per request
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def add_collector(self, collector: Collector) -> None:
        """Render ``collector`` with the service metrics (once; also in multiprocess mode)."""
        if collector in self.extra_collectors:
            return
        self.extra_collectors.append(collector)
        if not self.multiprocess:
            self.registry.register(collector)

    def remove_collector(self, collector: Collector) -> None:
        if collector in self.extra_collectors:
            self.extra_collectors.remove(collector)
            if not self.multiprocess:
                self.registry.unregister(collector)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and record its latency (route = route template)."""
        ch = self._children
        key = ("r", route, method, status)
        c = ch.get(key)
        if c is None:
            c = ch[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        c[0].inc()
        c[1].observe(seconds)

    @contextmanager
    def track_in_flight(self) -> Iterator[None]:
        """``with metrics.track_in_flight(): ...`` around request handling."""
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()

    @contextmanager
    def time_features(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.feature_seconds.observe(time.perf_counter() - t0)

    def observe_prediction(self, pair: str, signal: str) -> None:
        key = ("p", pair, signal)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = self.predictions.labels(pair, signal)
        c.inc()

    def render(self) -> tuple[bytes, str]:
        return render_latest(self)


_shared: dict[int, ServiceMetrics] = {}
_shared_lock = threading.Lock()


def create_metrics(registry: CollectorRegistry | None = None) -> ServiceMetrics:
    """Build the service metrics in ``registry`` (default: a new dedicated registry).

    In multiprocess mode returns this process's single shared instance (``registry`` is
    then only used for the first call).
    """
    mp = multiprocess_enabled()
    if mp:
        with _shared_lock:
            m = _shared.get(os.getpid())
            if m is None:
                m = _build(registry or CollectorRegistry(), mp)
                _shared[os.getpid()] = m
            return m
    return _build(registry or CollectorRegistry(), mp)


def _build(reg: CollectorRegistry, mp: bool) -> ServiceMetrics:
    return ServiceMetrics(
        registry=reg,
        multiprocess=mp,
        requests=Counter(
            "bqx_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=reg,
        ),
        latency=Histogram(
            "bqx_http_request_duration_seconds",
            "HTTP request latency (server side, seconds).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        in_flight=Gauge(
            "bqx_http_requests_in_flight",
            "Requests being handled now.",
            registry=reg,
            multiprocess_mode="livesum",
        ),
        model_cache_hits=Counter("bqx_model_cache_hits", "Model LRU cache hits.", registry=reg),
        model_cache_misses=Counter(
            "bqx_model_cache_misses", "Model LRU cache misses (model loaded).", registry=reg
        ),
        model_cache_evictions=Counter(
            "bqx_model_cache_evictions", "Models evicted from the LRU cache.", registry=reg
        ),
        model_load_seconds=Histogram(
            "bqx_model_load_seconds",
            "Time to load one model from the registry (seconds).",
            buckets=LOAD_BUCKETS,
            registry=reg,
        ),
        predictions=Counter(
            "bqx_predictions",
            "Predictions served, by pair and signal.",
            ["pair", "signal"],
            registry=reg,
        ),
        feature_seconds=Histogram(
            "bqx_feature_seconds",
            "Request-time feature computation (seconds).",
            buckets=FEATURE_BUCKETS,
            registry=reg,
        ),
        rate_limited=Counter(
            "bqx_rate_limited", "Requests refused with 429 (rate limit).", registry=reg
        ),
        rate_limit_backend_errors=Counter(
            "bqx_rate_limit_backend_errors",
            "Failed calls to the shared (Redis) rate-limit backend; per-worker limits applied.",
            registry=reg,
        ),
        auth_failures=Counter(
            "bqx_auth_failures",
            "Requests refused by authentication/authorisation.",
            ["reason"],
            registry=reg,
        ),
        decision_log_errors=Counter(
            "bqx_decision_log_errors",
            "Decisions that could not be written to the decision log.",
            registry=reg,
        ),
    )


def render_latest(source: CollectorRegistry | ServiceMetrics) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type.

    In multiprocess mode the values of all worker processes are aggregated from
    ``PROMETHEUS_MULTIPROC_DIR`` (the given registry is not used); otherwise ``source``'s
    registry is rendered.
    """
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        agg = CollectorRegistry()
        multiprocess.MultiProcessCollector(agg)
        if isinstance(source, ServiceMetrics):
            for c in source.extra_collectors:
                agg.register(c)
        return generate_latest(agg), CONTENT_TYPE_LATEST
    reg = source.registry if isinstance(source, ServiceMetrics) else source
    return generate_latest(reg), CONTENT_TYPE_LATEST
