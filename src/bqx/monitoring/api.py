"""API resources of monitoring (mounted via ROUTER_MODULES in bqx.serving.app).

    GET /v1/alerts                        reader  alerts (?open=true|false, ?pair=)
    GET /v1/monitoring/quality/{pair}     reader  live quality per version and window
    GET /v1/monitoring/drift/{pair}       reader  drift of captured inputs vs the baseline
    GET /v1/monitoring/summary            reader  open alerts by severity, matured counts
    GET /v1/monitoring/dashboard          reader  everything /dashboard shows, in one call
    GET /dashboard                        open    the live dashboard page (HTML, no data)

An unknown pair is a 422 listing the valid pairs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from bqx.serving.app import ApiError, _ctx, _json, require
from bqx.serving.auth import Role

router = APIRouter(tags=["monitoring"])
_reader = [Depends(require(Role.reader))]


def _out(status: int, obj: Any) -> Response:
    import json

    from bqx.jsonutil import dumps

    return _json(status, json.loads(dumps(obj, indent=None)))


def _pair(pair: str) -> str:
    from bqx.universe import PAIRS

    p = pair.upper().replace("/", "").replace("_", "")
    if p not in PAIRS:
        raise ApiError(422, "unknown_pair", f"unknown pair {pair!r}; valid: {', '.join(PAIRS)}")
    return p


@router.get("/v1/alerts", dependencies=_reader)
async def alerts(request: Request, open: bool = True, pair: str | None = None) -> Response:
    """Alerts, oldest first (default: only open ones), with who acknowledged them."""
    state = _ctx(request).service.state
    p = _pair(pair) if pair else None
    from bqx.monitoring.gauges import with_acks

    def go() -> list[dict[str, Any]]:
        df = state.read_alerts(open_only=open, pair=p)
        return with_acks(state, df.to_dict(orient="records"))

    return _out(200, {"alerts": await run_in_threadpool(go)})


@router.get("/v1/monitoring/quality/{pair}", dependencies=_reader)
async def quality(pair: str, request: Request) -> Response:
    """Live R², MAE, RMSE, DA, coverage per model version over 1 d and 7 d windows, each
    with its overlap-aware standard error and effective sample size."""
    from bqx.monitoring.quality import quality_report

    p = _pair(pair)
    state = _ctx(request).service.state
    end = pd.Timestamp.now(tz="UTC")

    def go() -> dict[str, Any]:
        d = state.read_decisions(p, start=end - pd.Timedelta(days=8), by="asof_ts")
        return quality_report(d, now=end)

    return _out(200, {"pair": p, **(await run_in_threadpool(go))})


@router.get("/v1/monitoring/drift/{pair}", dependencies=_reader)
async def drift(
    pair: str, request: Request, hours: float = 24.0, end: str | None = None
) -> Response:
    """Drift of the inputs captured over the ``hours`` of served bars before ``end`` (default
    now; set it to look at a replayed or historical period) against each
    served version's frozen training baseline: per feature KL, PSI, KS, Wasserstein, missing
    and out-of-range shares, and the worst feature. Versions without a baseline are listed
    under ``no_baseline`` (``bqx monitor baseline PAIR VERSION`` makes one)."""
    from bqx.monitoring.run import drift_pass

    p = _pair(pair)
    if not (0 < hours <= 24 * 31):
        raise ApiError(422, "invalid_input", "hours must be in (0, 744]")
    try:
        t_end = pd.Timestamp(end) if end else pd.Timestamp.now(tz="UTC")
        t_end = t_end.tz_localize("UTC") if t_end.tzinfo is None else t_end.tz_convert("UTC")
        if t_end is pd.NaT or t_end - pd.Timedelta(hours=hours) is pd.NaT:
            raise ValueError(end)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(422, "invalid_input", f"end {end!r} is not an ISO timestamp") from None
    svc = _ctx(request).service

    def go() -> dict[str, Any]:
        rep, _ = drift_pass(svc.state, svc.registry, t_end, pd.Timedelta(hours=hours), pair=p)
        return rep

    return _out(200, {"pair": p, "window_hours": hours, **(await run_in_threadpool(go))})


@router.get("/v1/monitoring/summary", dependencies=_reader)
async def summary(request: Request) -> Response:
    """Open alerts by severity and the open alerts themselves."""
    state = _ctx(request).service.state
    df = await run_in_threadpool(state.read_alerts, open_only=True)
    by = df["severity"].value_counts().to_dict() if not df.empty else {}
    return _out(
        200,
        {
            "open_alerts": {s: int(by.get(s, 0)) for s in ("critical", "warning", "info")},
            "alerts": df.to_dict(orient="records"),
        },
    )


@router.get("/v1/monitoring/dashboard", dependencies=_reader)
async def dashboard_data(request: Request) -> Response:
    """What ``/dashboard`` shows, from the service's cached monitoring snapshot (refreshed
    every ``monitor.gauges_refresh_s`` off the request path): traffic of the last hour
    (invocations per minute, latency p50/p95/p99, error rate), the newest monitoring pass
    (live quality per pair and version, drift per pair with its worst features), open
    alerts, notifier failures and production versions."""
    gauges = getattr(request.app.state, "monitoring", None)
    if gauges is None:
        raise ApiError(503, "not_ready", "monitoring snapshot not started")
    return _out(200, gauges.dashboard())


_PAGE: bytes | None = None


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> Response:
    """The self-contained live dashboard (inline JS/CSS, no CDN). The page holds no data: it
    fetches ``/v1/monitoring/dashboard`` with the key given as ``#key=...`` or typed in."""
    global _PAGE
    if _PAGE is None:
        from importlib.resources import files

        _PAGE = files("bqx.monitoring").joinpath("dashboard.html").read_bytes()
    return HTMLResponse(
        _PAGE,
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff",
        },
    )
