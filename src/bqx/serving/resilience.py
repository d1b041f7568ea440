"""How the prediction service survives infrastructure outages (wired in by a few lines of
:mod:`bqx.serving.service` and :mod:`bqx.serving.app`; see docs/operations.md).

* :func:`make_decision_writer` -- the decision-log writer with memory bound and spill
  directory from ``[resilience]`` settings, its failures counted in ``/metrics``.
* :func:`readiness_checks` -- the state database and the decision log in ``/readyz``:
  ready is False while decisions cannot be made durable (the spill file is unwritable).
* :class:`ResilienceMetrics` -- gauges of what the decision log holds, reconnects and
  spill failures; :func:`update_metrics` refreshes them on each maintenance tick.
* :func:`verify_key` -- API-key verification off the event loop with a timeout (issue
  18.11): a cached key is checked inline (microseconds), a cache miss reads the state
  database in a worker thread, so a hung database cannot freeze ``/healthz``.
* :func:`bound_mlflow_retries` -- MLflow's HTTP client retries 7 times with exponential
  backoff by default (minutes); a server process answers 503 within seconds instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from bqx.serving.auth import ApiKeys, Principal
    from bqx.serving.service import PredictionService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResilienceMetrics:
    decision_log_held: Gauge  # where = memory | spill
    decision_log_spill_ok: Gauge
    decision_log_replayed: Gauge
    dependency_up: Gauge  # component = store | state | registry
    spill_failures: Counter


_by_registry: dict[int, ResilienceMetrics] = {}
_lock = threading.Lock()


def resilience_metrics(registry: CollectorRegistry) -> ResilienceMetrics:
    """This registry's resilience metrics (created once per registry)."""
    with _lock:
        m = _by_registry.get(id(registry))
        if m is None:
            m = ResilienceMetrics(
                decision_log_held=Gauge(
                    "bqx_decision_log_held",
                    "Decisions answered but not yet in the state database, by where they "
                    "wait (memory | spill).",
                    ["where"],
                    registry=registry,
                    multiprocess_mode="livesum",
                ),
                decision_log_spill_ok=Gauge(
                    "bqx_decision_log_spill_ok",
                    "1 while the decision spill file is writable (0: decisions at risk).",
                    registry=registry,
                    multiprocess_mode="livemin",
                ),
                decision_log_replayed=Gauge(
                    "bqx_decision_log_replayed",
                    "Decisions written late (replayed from memory or spill) by this process.",
                    registry=registry,
                    multiprocess_mode="livesum",
                ),
                dependency_up=Gauge(
                    "bqx_dependency_up",
                    "1 when the component answered its last check (store | state | registry).",
                    ["component"],
                    registry=registry,
                    multiprocess_mode="livemin",
                ),
                spill_failures=Counter(
                    "bqx_decision_log_spill_failures",
                    "Times the decision spill file could not be written (disk full?).",
                    registry=registry,
                ),
            )
            _by_registry[id(registry)] = m
        return m


def make_decision_writer(svc: PredictionService) -> Any:
    """The service's decision writer: spills to ``[resilience] spill_dir`` (default
    ``<home>/spill``), replays what earlier processes left there."""
    from bqx.state import DecisionLogWriter

    s = svc.settings
    r = s.resilience
    m = svc.metrics
    res = resilience_metrics(m.registry) if m is not None else None

    def on_error(_e: BaseException, n: int) -> None:
        if m is not None:
            m.decision_log_errors.inc(n)

    def on_critical(_e: BaseException) -> None:
        if res is not None:
            res.spill_failures.inc()

    return DecisionLogWriter(
        svc.state,
        on_error=on_error,
        on_critical=on_critical,
        spill_dir=r.spill_dir or (s.home / "spill"),
        max_memory=r.decision_memory_rows,
        retry_max_s=r.reconnect_max_s,
    )


def readiness_checks(svc: PredictionService) -> tuple[dict[str, Any], bool]:
    """Extra ``/readyz`` checks: (checks to merge, all of them fine)."""
    checks: dict[str, Any] = {}
    ok = True
    try:
        checks["state"] = bool(svc.state.ping())
    except Exception:
        checks["state"] = False
    ok = ok and checks["state"]
    bars = getattr(svc, "bars", None)
    if bars is not None and bars.snapshot is None and getattr(svc, "_bars_failure", None):
        checks["bars_loaded"] = False  # the store failed before any bar was cached
        ok = False
    w = svc._writer
    if w is not None:
        st = w.status()
        checks["decision_log"] = {
            "held_memory": st["held_memory"],
            "held_spill": st["held_spill"],
            "queued": st["queued"],
            "spill_ok": st["spill_ok"],
            "database_ok": st["database_ok"],
        }
        ok = ok and bool(st["spill_ok"])
    return checks, ok


def update_metrics(svc: PredictionService, checks: dict[str, Any] | None = None) -> None:
    """Refresh the resilience gauges (cheap: reads counters the writer keeps)."""
    if svc.metrics is None:
        return
    m = resilience_metrics(svc.metrics.registry)
    w = svc._writer
    if w is not None:
        m.decision_log_held.labels("memory").set(w.held_memory)
        m.decision_log_held.labels("spill").set(w.held_spill)
        m.decision_log_spill_ok.set(1 if w.spill_ok else 0)
        m.decision_log_replayed.set(w.replayed)
    if checks:
        for comp in ("store", "state", "registry"):
            if comp in checks:
                m.dependency_up.labels(comp).set(1 if checks[comp] else 0)


async def verify_key(keys: ApiKeys, key: str, timeout_s: float) -> Principal | None:
    """:meth:`ApiKeys.verify` without blocking the event loop on the state database.

    A key whose row is cached is verified inline; otherwise the lookup runs in a worker
    thread and waits at most ``timeout_s`` (then :class:`~bqx.state.StateError` -> 503; the
    thread finishes on its own when the database answers).
    """
    from starlette.concurrency import run_in_threadpool

    from bqx.state import StateError

    if keys.is_cached(key):
        return keys.verify(key)
    try:
        return await asyncio.wait_for(run_in_threadpool(keys.verify, key), timeout_s)
    except TimeoutError:
        raise StateError(
            f"API key lookup timed out after {timeout_s:g} s (state database not answering)"
        ) from None


def bound_mlflow_retries() -> None:
    """Cap MLflow's HTTP retries in a server process (unless the operator set them)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


# -- 503 bodies ------------------------------------------------------------------------------
_last_logged: dict[str, float] = {}


def outage_body(exc: BaseException) -> dict[str, Any] | None:
    """The JSON body of a 503 for an infrastructure failure, or None if ``exc`` is not one.

    Stable code and component, a generic message: the exception text (paths, PIDs, hosts,
    users, database names) goes to the log only (issue 18.16).
    """
    from bqx.infra.outage import classify

    o = classify(exc)
    if o is None:
        return None
    return {
        "error": o.code,
        "detail": o.message,
        "hint": f"retry after {o.retry_after_s} s (Retry-After); the service reconnects "
        "by itself; operators: see the server log and /readyz",
        "component": o.component,
    }


def _address(settings: Any, component: str) -> str | None:
    from bqx.infra.redact import public_address

    url = {
        "store": lambda: settings.resolved_store_url,
        "state": lambda: settings.resolved_state_url,
        "registry": lambda: settings.resolved_tracking_uri,
    }.get(component)
    try:
        return public_address(url()) if url is not None else None
    except Exception:  # pragma: no cover - settings always resolve
        return None


def outage_response(request: Any, exc: BaseException, body: dict[str, Any]) -> Any:
    """503 with ``Retry-After`` and the redacted address; the full (redacted) error is
    logged at most once per second per component."""
    import json
    import time

    from fastapi.responses import Response

    from bqx.infra.outage import RETRY_AFTER_S
    from bqx.infra.redact import redact

    comp = str(body.get("component"))
    ctx = getattr(request.app.state, "ctx", None)
    settings = ctx.settings if ctx is not None else None
    out = dict(body)
    if settings is not None:
        addr = _address(settings, comp)
        if addr is not None:
            out["address"] = addr
    now = time.monotonic()
    if now - _last_logged.get(comp, 0.0) > 1.0:
        _last_logged[comp] = now
        log.warning("503 %s: %s: %s", out["error"], type(exc).__name__, redact(exc))
    return Response(
        json.dumps(out),
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def ready_within(svc: PredictionService, timeout_s: float) -> dict[str, Any]:
    """``svc.ready()`` in a worker thread, at most ``timeout_s`` seconds (a hung database
    makes readiness False, not a hung probe). One check runs at a time per service."""
    from starlette.concurrency import run_in_threadpool

    task: asyncio.Task[dict[str, Any]] | None = getattr(svc, "_bqx_ready_task", None)
    if task is None or task.done():
        task = asyncio.ensure_future(run_in_threadpool(svc.ready))
        svc._bqx_ready_task = task  # type: ignore[attr-defined]
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        snap = svc.bars.snapshot if svc.bars is not None else None
        return {
            "ready": False,
            "checks": {"timed_out_after_s": timeout_s},
            "newest_bar": snap.last_ts.isoformat() if snap is not None else None,
            "models_cached": svc.models.info(),
        }
