"""Monitoring seen from the service: Prometheus gauges and the dashboard's data.

The prediction service does not run monitoring passes (``bqx monitor run`` and the
operator do); it *shows* their results. :class:`MonitoringGauges` is a daemon thread that
every ``monitor.gauges_refresh_s`` seconds reads, off the request path:

* the newest pass summary (``monitor_runs``, written by :func:`bqx.monitoring.run.run_pass`),
* open alerts by severity and notifier delivery failures (``alerts``, ``alert_notices``:
  notifiers run in the monitoring process, so their failures are read from the state),
* the production version of every pair (registry),
* a sample of the service's own request counters and latency histogram, kept for an hour,
  from which the dashboard draws invocations per minute, p50/p95/p99 and the error rate.

A scrape of ``/metrics`` only renders the cached snapshot (:meth:`collect`): no database
query on the scrape, none on a prediction. Label cardinality is bounded: drift is one
series per pair (the worst feature's KL, the count of features over each threshold), not
one per (pair, feature); live quality is one series per (pair, served version, window).

Gauges (all ``bqx_`` prefixed):

=============================================  =====================================
``monitoring_last_pass_timestamp_seconds``     when the newest pass ran (unix time)
``monitoring_last_pass_as_of_timestamp_seconds``  the end of its windows
``monitoring_last_pass_duration_seconds``      its run time
``monitoring_last_pass_errors``                failed steps in it
``drift_worst_kl{pair}``                       KL of the pair's worst feature (nats)
``drift_severity{pair}``                       -1 insufficient, 0 ok, 1 warning, 2 critical
``drift_features_over_threshold{pair,level}``  features over the warning / critical KL
``live_r2{pair,version,window}``               live R² from matured decisions
``live_r2_se{pair,version,window}``            its overlap-aware standard error
``live_n_eff{pair,version,window}``            effective sample size behind it
``live_directional_accuracy{pair,version,window}``
``live_coverage{pair,version,window}``         interval coverage
``test_r2{pair,version}``                      the version's test-set R²
``live_r2_drop_alert{pair,version,window}``    1: drop > 0.05 and significant
``alerts_open{severity}``                      open alerts
``alert_notifier_failures{notifier}``          failed deliveries recorded (cumulative)
``alert_notices_failing{notifier}``            notices whose last delivery failed
``monitoring_gauges_age_seconds``              age of this snapshot
``monitoring_gauges_refresh_failures_total``   refreshes that failed (state DB down)
=============================================  =====================================
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bqx.serving.metrics import LATENCY_BUCKETS, ServiceMetrics

log = logging.getLogger(__name__)

#: Routes counted as invocations (and whose latency the dashboard shows).
INVOCATION_PREFIX = "/v1/predict"
#: Routes left out of the error rate (probes, scrapes and the dashboard's own polling).
UNCOUNTED_ROUTES = ("/metrics", "/healthz", "/readyz", "/dashboard", "unmatched")
_SEV = {"insufficient": -1, "ok": 0, "warning": 1, "critical": 2}
_SEVERITIES = ("critical", "warning", "info")
#: The notifiers of bqx.monitoring.notifiers: always exported (0 until one fails).
_NOTIFIERS = ("log", "webhook", "smtp")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: linear interpolation inside the bucket holding
    rank ``q * total`` of cumulative ``(upper_bound, count)`` pairs (last is +Inf)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lo_b, lo_c = 0.0, 0.0
    for b, c in buckets:
        if c >= rank:
            if math.isinf(b):
                return lo_b  # above the highest finite bound: Prometheus returns it
            return lo_b + (b - lo_b) * ((rank - lo_c) / (c - lo_c) if c > lo_c else 0.0)
        lo_b, lo_c = b, c
    return lo_b


def traffic_sample(metrics: ServiceMetrics) -> dict[str, Any]:
    """Cumulative totals of the service's request metrics now (all workers in
    multiprocess mode): invocations, counted requests, 5xx, and the invocation latency
    histogram as cumulative bucket counts (aligned with :data:`LATENCY_BUCKETS` + inf)."""
    if metrics.multiprocess:
        from prometheus_client import CollectorRegistry, multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        families = list(reg.collect())
    else:
        families = [
            f
            for f in metrics.registry.collect()
            if f.name in ("bqx_http_requests", "bqx_http_request_duration_seconds")
        ]
    inv = req = err = 0.0
    bounds = [*LATENCY_BUCKETS, math.inf]
    buckets = [0.0] * len(bounds)
    for fam in families:
        for s in fam.samples:
            route = s.labels.get("route", "")
            if s.name == "bqx_http_requests_total":
                if route in UNCOUNTED_ROUTES:
                    continue
                req += s.value
                if str(s.labels.get("status", "")).startswith("5"):
                    err += s.value
                if route.startswith(INVOCATION_PREFIX):
                    inv += s.value
            elif s.name == "bqx_http_request_duration_seconds_bucket" and route.startswith(
                INVOCATION_PREFIX
            ):
                le = float(s.labels["le"])
                if le in bounds:
                    buckets[bounds.index(le)] += s.value
    return {
        "t": time.time(),
        "invocations": inv,
        "requests": req,
        "errors": err,
        "buckets": buckets,
    }


def traffic_series(samples: list[dict[str, Any]], span_s: float = 60.0) -> list[dict[str, Any]]:
    """Per sample: invocations per minute, error rate and invocation latency p50/p95/p99
    over the ``span_s`` seconds before it (differences of cumulative samples)."""
    out: list[dict[str, Any]] = []
    bounds = [*LATENCY_BUCKETS, math.inf]
    j = 0
    for i, cur in enumerate(samples):
        while j < i and cur["t"] - samples[j + 1]["t"] >= span_s:
            j += 1
        if j >= i:
            continue
        prev = samples[j]
        dt = cur["t"] - prev["t"]
        if dt <= 0:
            continue
        d_req = cur["requests"] - prev["requests"]
        d_inv = cur["invocations"] - prev["invocations"]
        if d_req < 0 or d_inv < 0:  # a worker restarted: counters reset
            continue
        hist = [(b, c - p) for b, c, p in zip(bounds, cur["buckets"], prev["buckets"], strict=True)]
        q = {f"p{int(x * 100)}": histogram_quantile(x, hist) for x in (0.5, 0.95, 0.99)}
        out.append(
            {
                "t": cur["t"],
                "per_min": d_inv * 60.0 / dt,
                "error_rate": (cur["errors"] - prev["errors"]) / d_req if d_req > 0 else None,
                **q,
            }
        )
    return out


class MonitoringGauges(Collector):
    """Cached monitoring snapshot, refreshed by a daemon thread; a Prometheus collector."""

    def __init__(
        self,
        state: Any,
        metrics: ServiceMetrics | None = None,
        registry: Any = None,
        *,
        refresh_s: float = 10.0,
        history_s: float = 3600.0,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.registry = registry
        self.refresh_s = float(refresh_s)
        self.snapshot: dict[str, Any] = {}
        self.refreshed_at: float | None = None
        self.started_at = time.time()
        self.refresh_failures = 0
        self.last_error: str | None = None
        n = max(int(history_s / max(self.refresh_s, 0.1)) + 1, 2)
        self.samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=n)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- refresh ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read everything the gauges and the dashboard show (a few small queries)."""
        if self.metrics is not None:
            sample = traffic_sample(self.metrics)
            with self._lock:
                self.samples.append(sample)
        try:
            snap = self._read_state()
        except Exception as e:  # state DB down: keep the last snapshot, count the failure
            self.refresh_failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("monitoring gauges: refresh failed (%s)", self.last_error)
            return
        with self._lock:
            self.snapshot = snap
            self.refreshed_at = time.time()
            self.last_error = None

    def _read_state(self) -> dict[str, Any]:
        return monitoring_status(self.state, self.registry, self.snapshot.get("production"))

    def start(self) -> MonitoringGauges:
        """Refresh at once, then every ``refresh_s``, on a daemon thread (the app's startup
        never waits for the state DB or the registry)."""
        self._thread = threading.Thread(target=self._run, name="bqx-monitor-gauges", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:  # never let the thread die
                log.warning("monitoring gauges: refresh failed", exc_info=True)
            if self._stop.wait(self.refresh_s):
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- views -----------------------------------------------------------------------------
    def dashboard(self) -> dict[str, Any]:
        """What ``/dashboard`` shows, from the cached snapshot (JSON-ready)."""
        with self._lock:
            snap = dict(self.snapshot)
            samples = list(self.samples)
        age = None if self.refreshed_at is None else time.time() - self.refreshed_at
        return {
            "refreshed_at": self.refreshed_at,
            "age_s": age,
            "refresh_s": self.refresh_s,
            "refresh_error": self.last_error,
            "traffic": traffic_series(samples),
            **snap,
        }

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            snap = self.snapshot
            refreshed = self.refreshed_at
        fails = CounterMetricFamily(
            "bqx_monitoring_gauges_refresh_failures",
            "Refreshes of the monitoring gauges that failed (state DB unreachable).",
        )
        fails.add_metric([], self.refresh_failures)
        yield fails
        age = GaugeMetricFamily(
            "bqx_monitoring_gauges_age_seconds", "Age of the monitoring snapshot (seconds)."
        )
        # never refreshed (state DB down since start): as old as the collector itself
        age.add_metric([], time.time() - (refreshed if refreshed is not None else self.started_at))
        yield age
        if not snap:
            return
        yield from _alert_families(snap)
        run = snap.get("run")
        if run is not None:
            yield from _run_families(run)


def monitoring_status(
    state: Any, registry: Any = None, previous_production: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The newest monitoring pass (``run``: None before the first), open alerts by severity
    and their rows, notifier failures (cumulative and currently failing) and, with a
    ``registry``, the production version of every pair (``previous_production`` when the
    registry does not answer). What ``bqx monitor status`` prints and the gauges export."""
    run = state.latest_monitor_run()
    alerts = state.read_alerts(open_only=True)
    notices = state.read_notices()
    failures: dict[str, int] = dict.fromkeys(_NOTIFIERS, 0)
    failing: dict[str, int] = dict.fromkeys(_NOTIFIERS, 0)
    for (_, notifier), n in notices.items():
        failures[notifier] = failures.get(notifier, 0) + int(n.get("failures") or 0)
        failing[notifier] = failing.get(notifier, 0) + (n.get("last_error") is not None)
    production: list[dict[str, Any]] = []
    if registry is not None:
        try:
            production = [
                {
                    "pair": v.pair,
                    "version": str(v.version),
                    "test_r2": v.test_r2,
                    "test_da": v.test_da,
                }
                for v in registry.versions()
                if "production" in v.aliases
            ]
        except Exception as e:
            log.warning("monitoring gauges: registry unavailable (%s)", e)
            production = list(previous_production or [])
    records = with_acks(state, alerts.to_dict(orient="records") if not alerts.empty else [])
    return {
        "run": None
        if run is None
        else {
            **run["summary"],
            "id": int(run["id"]),
            "ran_at": _ts(run["ran_at"]),
            "as_of": _ts(run["as_of"]),
            "seconds": float(run["seconds"]),
            "errors": int(run["errors"]),
            "error_messages": list(run["summary"].get("errors", [])),
        },
        "open_alerts": {s: sum(1 for a in records if a["severity"] == s) for s in _SEVERITIES},
        "alerts": records,
        "notifier_failures": failures,
        "notices_failing": failing,
        "production": sorted(production, key=lambda r: r["pair"]),
    }


def with_acks(state: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alert rows with ``acked_at`` / ``acked_by`` / ``ack_note`` (None when not acked)."""
    acks = state.read_acks() if records and hasattr(state, "read_acks") else {}
    for r in records:
        a = acks.get(int(r["id"]), {})
        r.update(acked_at=a.get("acked_at"), acked_by=a.get("actor"), ack_note=a.get("note"))
    return records


def _ts(v: Any) -> float:
    import pandas as pd

    return float(pd.Timestamp(v).timestamp())


def _g(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def _num(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _alert_families(snap: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    g = _g("bqx_alerts_open", "Open alerts by severity.", ["severity"])
    for s, n in snap["open_alerts"].items():
        g.add_metric([s], n)
    yield g
    f = _g(
        "bqx_alert_notifier_failures",
        "Failed alert deliveries recorded per notifier (cumulative, from the state DB).",
        ["notifier"],
    )
    for k, n in sorted(snap["notifier_failures"].items()):
        f.add_metric([k], n)
    yield f
    f = _g(
        "bqx_alert_notices_failing",
        "Alert notices whose last delivery attempt failed (pending retry).",
        ["notifier"],
    )
    for k, n in sorted(snap["notices_failing"].items()):
        f.add_metric([k], n)
    yield f


def _run_families(run: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    for name, doc, v in (
        ("timestamp_seconds", "When the newest monitoring pass ran (unix time).", run["ran_at"]),
        ("as_of_timestamp_seconds", "End of the newest pass's windows (unix).", run["as_of"]),
        ("duration_seconds", "Run time of the newest monitoring pass.", run["seconds"]),
        ("errors", "Failed steps in the newest monitoring pass.", run["errors"]),
    ):
        g = _g(f"bqx_monitoring_last_pass_{name}", doc)
        g.add_metric([], v)
        yield g
    kl = _g("bqx_drift_worst_kl", "KL divergence of the pair's worst-drifting feature.", ["pair"])
    sev = _g(
        "bqx_drift_severity",
        "Drift severity: -1 insufficient, 0 ok, 1 warning, 2 critical.",
        ["pair"],
    )
    over = _g(
        "bqx_drift_features_over_threshold",
        "Features whose drift is over the warning / critical KL threshold.",
        ["pair", "level"],
    )
    for pair, d in sorted(run.get("drift", {}).items()):
        kl.add_metric([pair], _num(d["worst"][0]["kl"]) if d["worst"] else math.nan)
        sev.add_metric([pair], _SEV.get(d["severity"], -1))
        over.add_metric([pair, "warning"], d["over_warning"])
        over.add_metric([pair, "critical"], d["over_critical"])
    yield kl
    yield sev
    yield over
    lab = ["pair", "version", "window"]
    fam = {
        "r2": _g("bqx_live_r2", "Live R² from matured decisions.", lab),
        "r2_se": _g("bqx_live_r2_se", "Overlap-aware standard error of live R².", lab),
        "n_eff": _g("bqx_live_n_eff", "Effective sample size behind live R².", lab),
        "da": _g("bqx_live_directional_accuracy", "Live directional accuracy.", lab),
        "coverage": _g("bqx_live_coverage", "Live interval coverage.", lab),
        "alert": _g(
            "bqx_live_r2_drop_alert",
            "1 when live R² is > 0.05 below test R² and the drop is significant.",
            lab,
        ),
    }
    test = _g("bqx_test_r2", "Test-set R² of a served version.", ["pair", "version"])
    seen: set[tuple[str, str]] = set()
    for r in run.get("quality", []):
        key = [str(r["pair"]), str(r["model_version"]), str(r["window"])]
        r2 = r.get("r2") or {}
        fam["r2"].add_metric(key, _num(r2.get("value")))
        fam["r2_se"].add_metric(key, _num(r2.get("se")))
        fam["n_eff"].add_metric(key, _num(r2.get("n_eff")))
        fam["da"].add_metric(key, _num((r.get("da") or {}).get("value")))
        fam["coverage"].add_metric(key, _num((r.get("coverage") or {}).get("value")))
        fam["alert"].add_metric(key, float(bool((r.get("r2_drop") or {}).get("alert"))))
        if tuple(key[:2]) not in seen and r.get("test_r2") is not None:
            seen.add((key[0], key[1]))
            test.add_metric(key[:2], float(r["test_r2"]))
    yield from fam.values()
    yield test
