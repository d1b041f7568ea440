"""Operational alert rules: the service's 5xx rate and latency, training failures.

The service's own request statistics come from the ``service_stats`` table (every serving
process flushes its per-route counts and latency histogram there; why a table and not a
scrape of ``/metrics``: see :mod:`bqx.serving.opstats`). Rules (SPEC section 7, settings
under ``[monitor]``):

* ``http_5xx_rate`` (critical): a route's share of 5xx answers over the last
  ``error_window_min`` (5) minutes above ``error_rate_critical`` (5 %);
* ``http_latency_p99`` (warning): a route's p99 over the last ``latency_window_min`` (10)
  minutes above ``p99_warning_ms`` (500 ms);

both only with at least ``ops_min_requests`` requests in the window, and resolved when the
condition clears (including when the route has no traffic any more). Quantiles are read
from the summed histogram as Prometheus' ``histogram_quantile`` does (linear inside the
bucket; beyond the last finite bucket the last bound).

Training failures: the operator's retrain raises ``retrain_failed`` (bqx.ops.triggers);
``bqx train`` raises ``training_failed`` per failed pair through :func:`training_alerts`,
resolved by that pair's next successful training. A monitoring pass that fails raises
``monitoring_failure`` (bqx.monitoring.run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bqx.monitoring.alerts import Condition

log = logging.getLogger(__name__)

ERROR_RULE = "http_5xx_rate"
LATENCY_RULE = "http_latency_p99"
TRAINING_RULE = "training_failed"


def bucket_quantile(q: float, counts: list[int], bounds: tuple[float, ...]) -> float:
    """Quantile ``q`` of a histogram (per-bucket counts, ``len(bounds) + 1`` buckets, the
    last one +Inf), interpolated linearly inside its bucket; NaN when empty."""
    total = sum(counts)
    if total <= 0:
        return float("nan")
    rank = q * total
    cum = 0.0
    for i, c in enumerate(counts):
        if c and cum + c >= rank:
            if i >= len(bounds):  # +Inf bucket: the last finite bound (as Prometheus)
                return float(bounds[-1])
            lo = bounds[i - 1] if i > 0 else 0.0
            return float(lo + (bounds[i] - lo) * (rank - cum) / c)
        cum += c
    return float(bounds[-1])


def route_stats(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum ``service_stats`` rows per route over all instances: requests, 5xx, error
    rate, mean and p50/p95/p99 latency (ms) and the number of instances."""
    from bqx.serving.buckets import LATENCY_BUCKETS

    acc: dict[str, dict[str, Any]] = {}
    for r in rows:
        a = acc.setdefault(
            str(r["route"]),
            {"n": 0, "e": 0, "s": 0.0, "b": [0] * (len(LATENCY_BUCKETS) + 1), "inst": set()},
        )
        a["n"] += int(r["requests"])
        a["e"] += int(r["errors_5xx"])
        a["s"] += float(r["seconds_sum"])
        a["b"] = [x + int(y) for x, y in zip(a["b"], r["buckets"], strict=True)]
        a["inst"].add(str(r["instance"]))
    out = {}
    for route, a in sorted(acc.items()):
        n = a["n"]
        q = {
            f"p{int(p * 100)}_ms": 1000 * bucket_quantile(p, a["b"], LATENCY_BUCKETS)
            for p in (0.5, 0.95, 0.99)
        }
        out[route] = {
            "requests": n,
            "errors_5xx": a["e"],
            "error_rate": a["e"] / n if n else None,
            "mean_ms": 1000 * a["s"] / n if n else None,
            **q,
            "instances": len(a["inst"]),
        }
    return out


def ops_conditions(state: Any, cfg: Any, now: Any = None) -> tuple[dict[str, Any], list[Condition]]:
    """Evaluate the 5xx-rate and p99 rules at ``now`` (default: the clock) from the
    request statistics of all serving instances. ``cfg``: :class:`MonitorSettings`."""
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    err_w = pd.Timedelta(minutes=cfg.error_window_min)
    lat_w = pd.Timedelta(minutes=cfg.latency_window_min)
    rows = state.read_service_stats(end - max(err_w, lat_w), end)
    for r in rows:
        r["at"] = pd.Timestamp(r["at"])
    err = route_stats(r for r in rows if r["at"] > end - err_w)
    lat = route_stats(r for r in rows if r["at"] > end - lat_w)
    conds: list[Condition] = []
    seen: set[str] = set()
    rules = (
        (ERROR_RULE, err, "critical", lambda st: st["error_rate"] > cfg.error_rate_critical,
         lambda route, st: (
             f"{route}: {st['errors_5xx']} of {st['requests']} requests answered 5xx "
             f"({st['error_rate']:.1%}) over the last {cfg.error_window_min:g} min "
             f"(threshold {cfg.error_rate_critical:.0%}; {st['instances']} instance(s))"
         )),
        (LATENCY_RULE, lat, "warning", lambda st: st["p99_ms"] > cfg.p99_warning_ms,
         lambda route, st: (
             f"{route}: p99 latency {st['p99_ms']:.0f} ms over the last "
             f"{cfg.latency_window_min:g} min (threshold {cfg.p99_warning_ms:g} ms; "
             f"{st['requests']} requests, p50 {st['p50_ms']:.1f} ms)"
         )),
    )  # fmt: skip
    for rule, stats, severity, fires, message in rules:
        for route, st in stats.items():
            if st["requests"] < cfg.ops_min_requests:
                continue  # too little traffic for a verdict
            fp = f"{rule}:{route}"
            seen.add(fp)
            conds.append(Condition(rule, fires(st), message(route, st), severity, None, fp))
    # open alerts of these rules whose route had (enough) traffic no more: clear them
    try:
        open_ = state.read_alerts(open_only=True)
    except Exception:  # pragma: no cover - the caller reports state errors
        open_ = None
    if open_ is not None and len(open_):
        for r in open_.itertuples(index=False):
            if r.rule in (ERROR_RULE, LATENCY_RULE) and r.fingerprint not in seen:
                conds.append(Condition(str(r.rule), False, "no traffic", "warning", None,
                                       str(r.fingerprint)))  # fmt: skip
    report = {
        "windows_min": {"errors": cfg.error_window_min, "latency": cfg.latency_window_min},
        "errors": err,
        "latency": lat,
    }
    return report, conds


def training_alerts(state: Any, outcomes: Iterable[tuple[str, bool, str | None]]) -> None:
    """``bqx train``: a critical ``training_failed`` alert per failed pair (``(pair, ok,
    error)``), resolving that pair's open one when it trains successfully. Best effort: a
    state DB that is down never hides the training result (logged). ``state``: a StateDB
    or a function that opens one."""
    try:
        st = state() if callable(state) else state
        for pair, ok, error in outcomes:
            fp = f"{TRAINING_RULE}:{pair}"
            if ok:
                st.resolve_alert(fp)
            else:
                first = (str(error or "").splitlines() or ["unknown error"])[0]
                st.raise_alert(
                    TRAINING_RULE,
                    f"{pair}: training failed: {first}",
                    severity="critical",
                    pair=pair,
                    fingerprint=fp,
                )
    except Exception as e:
        log.warning("training alerts not recorded: %s", e)
