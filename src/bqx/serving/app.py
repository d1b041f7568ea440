"""The FastAPI app factory: ``create_app(settings) -> FastAPI`` (SPEC section 5).

Routes (under ``/v1`` unless noted; roles reader < trader < admin)::

    POST /v1/predict                    reader   {pair, timestamp?} -> decision
    POST /v1/predict/batch              reader   {items: [...]} -> per-item results
    GET  /v1/features/{pair}?timestamp= reader   candidate values + as-of metadata
    GET  /v1/models                     reader   production versions, cached models
    GET  /v1/models/{pair}              reader   versions and promotion history
    POST /v1/models/{pair}/promote      admin    {version, reason?}
    POST /v1/models/{pair}/rollback     admin    {reason?}
    POST /v1/bars                       trader   {bars: [...]} validated like ingestion
    GET  /healthz  /readyz  /metrics    open     liveness, readiness, Prometheus

Why the request path looks the way it does (budget: p99 < 20 ms, > 200 req/s per worker):
handlers are ``async`` and compute inline on the event loop when everything is in memory
(bars, features of the as-of bar, the model) — a thread hop per request costs more than the
work; anything that may block on I/O (a model load, a store read for an old timestamp, a
registry call, a store write) runs in a worker thread. Middlewares are plain ASGI (no
``BaseHTTPMiddleware``, which adds a task per request). The response is serialised once
with ``json.dumps`` rather than re-validated through the response model.

Errors are always JSON ``{"error": code, "detail": what to fix, "hint"?}``; bad client
input is a 4xx (see :data:`ERROR_STATUS`), a 500 means a real server fault and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from bqx.config import Settings, load_settings
from bqx.errors import (
    BqxError,
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    ModelNotFoundError,
    NoDataError,
    RegistryError,
    StaleDataError,
    StoreError,
    UnknownPairError,
)
from bqx.serving.auth import ApiKeyError, ApiKeys, Principal, Role, extract_key
from bqx.serving.metrics import ServiceMetrics, create_metrics, render_latest
from bqx.serving.ratelimit import RateLimiter, make_limiter, retry_after_header
from bqx.serving.resilience import (
    bound_mlflow_retries,
    outage_body,
    outage_response,
    ready_within,
    verify_key,
)
from bqx.serving.schemas import (
    BarsRequest,
    BarsResponse,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    FeaturesResponse,
    HealthResponse,
    ModelActionResponse,
    PredictRequest,
    PredictResponse,
    PromoteRequest,
    ReadyResponse,
    RollbackRequest,
)
from bqx.serving.service import (
    InvalidInputError,
    NoProductionModelError,
    Prediction,
    PredictionService,
)
from bqx.state import StateError
from bqx.universe import normalize_pair

log = logging.getLogger(__name__)

#: Exception type -> (HTTP status, error code). First match wins (subclasses first).
ERROR_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnknownPairError, 422, "unknown_pair"),
    (InvalidInputError, 422, "invalid_request"),
    (ApiKeyError, 422, "invalid_request"),
    (DataValidationError, 422, "invalid_bars"),
    (NoProductionModelError, 404, "no_production_model"),
    (ModelNotFoundError, 404, "model_not_found"),
    (NoDataError, 404, "no_data"),
    (StaleDataError, 409, "stale_data"),
    (InsufficientDataError, 409, "insufficient_data"),
    (RegistryError, 409, "conflict"),
    (StoreError, 503, "store_unavailable"),
    (StateError, 503, "state_unavailable"),
    (ConfigError, 500, "server_misconfigured"),
)
#: Seconds between background maintenance ticks (bar refresh and alias checks run when due).
TICK_S = 0.25
#: Seconds between writes of the API keys' last-used times.
KEYS_FLUSH_S = 30.0


class ApiError(Exception):
    """An error response decided by the API layer itself (auth, limits, sizes)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.hint = status, code, detail, hint
        self.headers = headers


def error_of(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for a library error; unknown BqxErrors are 400."""
    if isinstance(exc, ApiError):
        body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
        if exc.hint:
            body["hint"] = exc.hint
        return exc.status, body
    outage = outage_body(exc)  # infrastructure: 503, generic text (details stay in logs)
    if outage is not None:
        return 503, outage
    status, code = 400, "bad_request"
    for typ, st, c in ERROR_STATUS:
        if isinstance(exc, typ):
            status, code = st, c
            break
    msg = getattr(exc, "message", None) or str(exc)
    body = {"error": code, "detail": msg}
    hint = getattr(exc, "hint", None)
    if hint:
        body["hint"] = hint
    if isinstance(exc, DataValidationError) and isinstance(exc.report, pd.DataFrame):
        rep = exc.report.head(100)
        ts = pd.DatetimeIndex(rep["ts"])
        body["issues"] = [
            {
                "row": int(row),
                "pair": str(pair),
                "ts": None if t is pd.NaT else t.isoformat(),
                "reason": str(reason),
                "detail": str(detail),
            }
            for row, pair, t, reason, detail in zip(
                rep["row"], rep["pair"], ts, rep["reason"], rep["detail"], strict=True
            )
        ]
    return status, body


#: what ``json.dumps(body, allow_nan=False, default=str)`` builds on every call
_ENCODER = json.JSONEncoder(allow_nan=False, default=str)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        _ENCODER.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _worker_header(svc: Any) -> dict[str, str] | None:
    """``X-BQX-Worker``: which worker process answered (the random suffix of its rollout
    health rows in the state DB; no host name or pid)."""
    r = svc.router
    return {"X-BQX-Worker": r.worker_tag} if r is not None else None


# =========================================================================================
# app context and dependencies
# =========================================================================================
@dataclass
class AppContext:
    settings: Settings
    service: PredictionService
    keys: ApiKeys
    limiter: RateLimiter
    metrics: ServiceMetrics


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: a valid key with at least ``role``, within its rate limit."""

    async def dep(request: Request) -> Principal:
        ctx = _ctx(request)
        key = extract_key(request.headers)
        if not key:
            ctx.metrics.auth_failures.labels("missing").inc()
            raise ApiError(
                401,
                "unauthorized",
                "missing API key",
                hint="send the header 'X-API-Key: <key>' or 'Authorization: Bearer <key>'; "
                "create a key with `bqx keys create --role reader`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # off the event loop on a cache miss, with a timeout (a hung database -> 503)
        principal = await verify_key(ctx.keys, key, ctx.settings.resilience.auth_timeout_s)
        if principal is None:
            ctx.metrics.auth_failures.labels("invalid").inc()
            raise ApiError(
                401,
                "unauthorized",
                "the API key is malformed, unknown or revoked",
                hint="check the key (format bqx_<id>_<secret>) or create a new one",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.allows(role):
            ctx.metrics.auth_failures.labels("forbidden").inc()
            raise ApiError(
                403,
                "forbidden",
                f"key {principal.key_id} has role {principal.role.value}; this needs {role.value}",
                hint=f"use a key created with `bqx keys create --role {role.value}`",
            )
        rate = principal.rate_or(ctx.settings.serve.rate_limit)
        dec = await ctx.limiter.acheck(principal.key_id, rate)
        if not dec.allowed:
            ctx.metrics.rate_limited.inc()
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {rate:g} requests/s for key {principal.key_id} exceeded",
                hint="retry after the number of seconds in the Retry-After header",
                headers={"Retry-After": retry_after_header(dec.retry_after)},
            )
        request.scope["bqx.key_id"] = principal.key_id
        request.scope["bqx.principal"] = principal
        return principal

    return dep


#: the reader dependency itself (also called by :class:`PredictFastPath`)
reader_dep = require(Role.reader)
reader = Depends(reader_dep)
trader = Depends(require(Role.trader))
admin = Depends(require(Role.admin))

_ERRORS: dict[int | str, dict[str, Any]] = {
    st: {"model": ErrorBody} for st in (401, 403, 404, 409, 413, 422, 429, 503)
}


# =========================================================================================
# ASGI middlewares
# =========================================================================================
class MetricsMiddleware:
    """Counts requests by route template/method/status and records latency; stores the
    start time in the scope so handlers can report end-to-end ``latency_ms``."""

    def __init__(self, app: Any, metrics: ServiceMetrics, stats: Any = None) -> None:
        self.app, self.metrics, self.stats = app, metrics, stats

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope["bqx.t0"] = t0
        status = 500

        async def send_wrapper(msg: Any) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        m = self.metrics
        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            dt = time.perf_counter() - t0
            m.observe_request(route, scope["method"], status, dt)
            if self.stats is not None:  # for monitoring's 5xx / latency rules
                self.stats.observe(route, status, dt)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes (serve.max_body_bytes)")


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes: from Content-Length before reading anything,
    and while streaming for chunked bodies without one."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(
                        send,
                        400,
                        {"error": "bad_request", "detail": "invalid Content-Length header"},
                    )
                    return
                if n > self.limit:
                    await _send_json(
                        send,
                        413,
                        {
                            "error": "body_too_large",
                            "detail": f"request body of {n} bytes exceeds {self.limit} bytes",
                            "hint": "send fewer items per request (serve.max_body_bytes)",
                        },
                    )
                    return
                break
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return msg

        await self.app(scope, limited, send)


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


# =========================================================================================
# the app
# =========================================================================================
def create_app(
    settings: Settings | None = None, *, service: PredictionService | None = None
) -> FastAPI:
    """Build the API for ``settings`` (default: environment / bqx.toml).

    ``service`` may be injected (tests); otherwise one is built in the lifespan of the app
    (so every uvicorn worker process builds its own caches and decision-log thread).
    """
    s = settings or load_settings()
    s.ensure_home()
    metrics = create_metrics()
    from bqx.serving.opstats import RequestStats

    stats = RequestStats()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from bqx.state import open_state

        bound_mlflow_retries()
        svc = service or PredictionService(s, metrics=metrics)
        if svc.metrics is None:
            svc.metrics = metrics
            svc.models.metrics = metrics
        state = open_state(s, tolerate_unreachable=True)  # start before the database
        keys = ApiKeys(state)
        limiter = make_limiter(s, on_error=lambda e: metrics.rate_limit_backend_errors.inc())
        app.state.ctx = AppContext(s, svc, keys, limiter, metrics)

        # import MLflow and open the registry now, not on the first request (~2 s), unless
        # the registry is read without it (a local store: tables + artifacts in place; admin
        # writes and lookups of versions the tables lack, e.g. a pair with no model, then
        # import it on first use)
        def warm_registry() -> None:
            if not svc.registry.reads_directly():
                _ = svc.registry.client

        await run_in_threadpool(warm_registry)
        info = await run_in_threadpool(svc.start)
        log.info("prediction service started: %s", info)
        task = asyncio.create_task(_maintenance(svc, keys, stats, state, s.monitor.stats_flush_s))
        from bqx.monitoring.gauges import MonitoringGauges  # gauges + /dashboard data

        gauges = MonitoringGauges(
            state, metrics, svc.registry, refresh_s=s.monitor.gauges_refresh_s
        )
        app.state.monitoring = gauges.start()
        metrics.add_collector(gauges)
        try:
            yield
        finally:
            metrics.remove_collector(gauges)
            gauges.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                keys.flush_last_used()
            with contextlib.suppress(Exception):
                await run_in_threadpool(stats.flush, state)
            await run_in_threadpool(svc.close)

    app = FastAPI(
        title="BQX ML prediction API",
        version="1",
        description="FX forecasts per pair: features computed at request time from the bar "
        "store, production models from the registry, split-conformal intervals and "
        "BUY/SELL/HOLD signals. Authenticate with `X-API-Key: <key>`. See docs/api.md.",
        lifespan=lifespan,
    )
    _install_errors(app)
    app.add_middleware(BodyLimitMiddleware, limit=s.serve.max_body_bytes)
    if s.serve.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(s.serve.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics, stats=stats)
    _routes(app, metrics)
    _include_routers(app)
    app.router.middleware_stack = PredictFastPath(app, app.router.middleware_stack)
    return app


#: Resource routers that live in modules of their own (monitoring, rollout, risk, ...):
#: each module exposes ``router = fastapi.APIRouter()`` and may import the helpers of this
#: module (``require``, ``_ctx``, ``_json``, ``ApiError``). Add a module here to mount it.
ROUTER_MODULES: tuple[str, ...] = (
    "bqx.rollout.api",
    "bqx.monitoring.api",
    "bqx.serving.decision_api",
)


def _include_routers(app: FastAPI) -> None:
    import importlib

    for mod in ROUTER_MODULES:
        app.include_router(importlib.import_module(mod).router)


async def _maintenance(
    svc: PredictionService,
    keys: ApiKeys,
    stats: Any = None,
    state: Any = None,
    stats_every_s: float = 15.0,
) -> None:
    """Refresh bars and model aliases off the request path; flush key usage marks and
    the per-route request statistics (:mod:`bqx.serving.opstats`)."""
    last_keys = last_stats = time.monotonic()
    while True:
        await asyncio.sleep(min(TICK_S, stats_every_s))
        try:
            if stats is not None and time.monotonic() - last_stats >= stats_every_s:
                last_stats = time.monotonic()
                await run_in_threadpool(stats.flush, state)
            await run_in_threadpool(svc.maintain)
            if time.monotonic() - last_keys > KEYS_FLUSH_S:
                last_keys = time.monotonic()
                await run_in_threadpool(keys.flush_last_used)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the loop alive whatever happens
            log.exception("maintenance tick failed")


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> Response:
        st, body = error_of(exc)
        return _json(st, body, exc.headers)

    @app.exception_handler(BqxError)
    async def _bqx_error(r: Request, exc: BqxError) -> Response:
        st, body = error_of(exc)
        if st == 503 and "component" in body:
            return outage_response(r, exc, body)
        if st >= 500:
            log.error("server fault: %s", exc)
        return _json(st, body)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> Response:
        return _json(
            422,
            {
                "error": "invalid_request",
                "detail": _validation_text(exc.errors()),
                "hint": "see the request schema at /docs",
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> Response:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            400: "bad_request",
        }
        return _json(
            exc.status_code,
            {
                "error": codes.get(exc.status_code, f"http_{exc.status_code}"),
                "detail": str(exc.detail),
            },
            getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _fault(r: Request, exc: Exception) -> Response:
        outage = outage_body(exc)  # a connection error that escaped un-wrapped: 503
        if outage is not None:
            return outage_response(r, exc, outage)
        log.exception("unhandled error")
        return _json(
            500, {"error": "internal_error", "detail": "the server failed; the error was logged"}
        )


def _validation_text(errors: Any) -> str:
    parts = []
    for e in list(errors)[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def _principal_id(request: Request) -> str | None:
    v = request.scope.get("bqx.key_id")
    return str(v) if v is not None else None


def _routes(app: FastAPI, metrics: ServiceMetrics) -> None:
    # -- health ---------------------------------------------------------------------------
    @app.get("/healthz", response_model=HealthResponse, tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (no dependency checks)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        tags=["health"],
        responses={503: {"model": ReadyResponse}},
    )
    async def readyz(request: Request) -> Response:
        """Store reachable, registry reachable and at least one production model."""
        ctx = _ctx(request)
        out = await ready_within(ctx.service, ctx.settings.resilience.ready_timeout_s)
        # informational, never fails readiness: without Redis limits are per worker
        lim = ctx.limiter
        shared = getattr(lim, "shared", None)
        out = {
            **out,
            "checks": {
                **out["checks"],
                "rate_limiter": "per-worker"
                if shared is None
                else ("shared" if shared else "per-worker (shared backend unreachable)"),
            },
        }
        return _json(200 if out["ready"] else 503, out)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prom() -> Response:
        """Prometheus exposition (all workers aggregated with --workers > 1)."""
        body, ctype = render_latest(metrics)
        return Response(body, media_type=ctype)

    # -- prediction -----------------------------------------------------------------------
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        tags=["predict"],
        dependencies=[reader],
    )
    async def predict(body: PredictRequest, request: Request) -> Response:
        """Forecast, interval and signal for one pair at its last bar at or before
        ``timestamp`` (default: the newest bar). Logged in the decision log."""
        return await predict_response(body, request)

    @app.post(
        "/v1/predict/batch",
        response_model=BatchResponse,
        responses=_ERRORS,
        tags=["predict"],
        dependencies=[reader],
    )
    async def predict_batch(body: BatchRequest, request: Request) -> Response:
        """Up to ``serve.max_batch`` predictions; each item succeeds or fails on its own."""
        ctx = _ctx(request)
        n = len(body.items)
        mx = ctx.settings.serve.max_batch
        if n > mx:
            raise ApiError(
                422,
                "batch_too_large",
                f"{n} items; at most {mx} per request",
                hint="split the batch (serve.max_batch)",
            )
        key_id = _principal_id(request)
        principal: Principal | None = request.scope.get("bqx.principal")
        if n > 1 and principal is not None:  # a batch costs one token per item
            rate = principal.rate_or(ctx.settings.serve.rate_limit)
            dec = await ctx.limiter.acheck(principal.key_id, rate, cost=n - 1)
            if not dec.allowed:
                ctx.metrics.rate_limited.inc()
                if dec.retry_after == float("inf"):
                    raise ApiError(
                        422,
                        "batch_exceeds_rate_limit",
                        f"{n} items exceed the burst of your rate limit ({rate:g}/s)",
                        hint="send smaller batches",
                    )
                raise ApiError(
                    429,
                    "rate_limited",
                    f"rate limit of {rate:g} requests/s exceeded",
                    headers={"Retry-After": retry_after_header(dec.retry_after)},
                )
        t0 = request.scope.get("bqx.t0")
        results = await run_in_threadpool(_run_batch, ctx.service, body.items, key_id, t0)
        failed = sum(1 for r in results if not r["ok"])
        return _json(200, {"count": n, "failed": failed, "results": results})

    # -- features -------------------------------------------------------------------------
    @app.get(
        "/v1/features/{pair}",
        response_model=FeaturesResponse,
        responses=_ERRORS,
        tags=["features"],
        dependencies=[reader],
    )
    async def features(
        pair: str, request: Request, timestamp: str | None = None, values: bool = True
    ) -> Response:
        """All candidate features of ``pair`` at its last bar at or before ``timestamp``,
        with the as-of bar, pipeline version and whether the vector came from the cache."""
        svc = _ctx(request).service
        snap = svc.bars.snapshot if svc.bars is not None else None
        from bqx.serving.service import parse_timestamp

        req = parse_timestamp(timestamp)
        if snap is not None and snap.covers(req):
            fv = svc.features(pair, req)
        else:
            fv = await run_in_threadpool(svc.features, pair, req)
        return _json(200, fv.as_dict(with_values=values))

    # -- models ---------------------------------------------------------------------------
    @app.get("/v1/models", tags=["models"], responses=_ERRORS, dependencies=[reader])
    async def models(request: Request) -> Response:
        """Production version of every pair that has one, and what this worker has cached."""
        svc = _ctx(request).service

        def listing() -> dict[str, Any]:
            vs = svc.registry.versions()
            prod = [v.as_dict() for v in vs if "production" in v.aliases]
            return {"production": prod, "versions": len(vs), "cached": svc.models.info()}

        return _json(200, await run_in_threadpool(listing))

    @app.get("/v1/models/{pair}", tags=["models"], responses=_ERRORS, dependencies=[reader])
    async def model_detail(pair: str, request: Request) -> Response:
        """All versions of one pair, its production version and promotion history."""
        svc = _ctx(request).service
        p = normalize_pair(pair)

        def detail() -> dict[str, Any]:
            vs = [v.as_dict() for v in svc.registry.versions(p)]
            hist = svc.registry.history(p)
            return {
                "pair": p,
                "production_version": next(
                    (v["version"] for v in vs if "production" in v["aliases"]), None
                ),
                "versions": vs,
                "history": json.loads(hist.to_json(orient="records", date_format="iso")),
            }

        return _json(200, await run_in_threadpool(detail))

    @app.post(
        "/v1/models/{pair}/promote",
        response_model=ModelActionResponse,
        responses=_ERRORS,
        tags=["models"],
        dependencies=[admin],
    )
    async def promote(pair: str, body: PromoteRequest, request: Request) -> Response:
        """Point ``production`` at an approved version; this worker serves it at once,
        other workers within ``serve.alias_ttl_s``."""
        p = normalize_pair(pair)
        actor = f"api-key:{_principal_id(request)}"
        return _json(
            200,
            await run_in_threadpool(
                _model_action,
                _ctx(request).service,
                p,
                "promote",
                str(body.version),
                actor,
                body.reason,
            ),
        )

    @app.post(
        "/v1/models/{pair}/rollback",
        response_model=ModelActionResponse,
        responses=_ERRORS,
        tags=["models"],
        dependencies=[admin],
    )
    async def rollback(
        pair: str, request: Request, body: RollbackRequest | None = None
    ) -> Response:
        """Return ``production`` to the version that served before the current one."""
        p = normalize_pair(pair)
        actor = f"api-key:{_principal_id(request)}"
        reason = body.reason if body is not None else None
        return _json(
            200,
            await run_in_threadpool(
                _model_action, _ctx(request).service, p, "rollback", None, actor, reason
            ),
        )

    # -- live bars ------------------------------------------------------------------------
    @app.post(
        "/v1/bars",
        response_model=BarsResponse,
        responses=_ERRORS,
        tags=["bars"],
        dependencies=[trader],
    )
    async def bars(body: BarsRequest, request: Request) -> Response:
        """Push live bars: validated exactly like ingestion (all or nothing), upserted
        atomically, and visible to this worker's predictions at once."""
        df = pd.DataFrame([b.model_dump() for b in body.bars])
        out = await run_in_threadpool(_ctx(request).service.push_bars, df)
        return _json(200, out)


async def predict_response(body: PredictRequest, request: Request) -> Response:
    """``POST /v1/predict`` once the key is checked: the route's body (FastAPI's endpoint
    and :class:`PredictFastPath` both call it)."""
    svc = _ctx(request).service
    key_id = _principal_id(request)
    t0: float | None = request.scope.get("bqx.t0")

    def call() -> Prediction:
        return svc.predict(body.pair, body.timestamp, key_id=key_id, started=t0, strict=body.strict)

    pred = await run_in_threadpool(call) if svc.needs_io(body.pair, body.timestamp) else call()
    if body.risk_check or body.explain:  # bqx.decision: risk check, SHAP explanation
        from bqx.serving.decision_api import predict_extras

        extras = await run_in_threadpool(predict_extras, request, pred, body)
        return _json(200, {**pred.as_dict(), **extras}, _worker_header(svc))
    return _json(200, pred.as_dict(), _worker_header(svc))


def _replay(
    messages: list[Any], receive: Any, exc: BaseException | None = None
) -> Callable[[], Awaitable[Any]]:
    """A ``receive`` that hands out ``messages`` again, then raises ``exc`` (what the
    original ``receive`` raised) or goes on with the original."""
    pending = list(messages)

    async def again() -> Any:
        if pending:
            return pending.pop(0)
        if exc is not None:
            raise exc
        return await receive()

    return again


def _json_media_type(ctype: bytes | None) -> bool:
    """``application/json`` with parameters (``; charset=utf-8``) or in other letter case:
    FastAPI parses such a body with ``json.loads`` of the bytes too (the charset is not
    used), so the fast path answers the same. Other ``+json`` types, a missing header and
    anything unusual go through FastAPI."""
    if ctype is None:
        return False
    return ctype.split(b";", 1)[0].strip().lower() == b"application/json"


class PredictFastPath:
    """``POST /v1/predict`` without FastAPI's per-request machinery, same responses.

    It sits where FastAPI's router is called (inside the ASGI middlewares and Starlette's
    ``ExceptionMiddleware``, so errors go to the same handlers and the metrics see the same
    route), and takes a request only when FastAPI would do exactly this with it: the path
    and method of the predict route (the first route that matches them), no ``root_path``,
    no dependency overrides, FastAPI's own OpenTelemetry off for the request (it records
    the selected route), ``Content-Type: application/json`` (with parameters such as a
    charset, in any letter case), a whole body that is a
    JSON object and a valid :class:`PredictRequest`. Then: the same reader dependency, the
    same :func:`predict_response`. Anything else (before any side effect: a bad body is
    validated by FastAPI after the key check, which this path has not run) goes to the
    router with the body replayed. What it skips per request: route matching, the content
    type parsed through ``email.message``, dependency solving and the body's field
    validation machinery, two ``AsyncExitStack``s (tens of microseconds of Python).
    """

    PATH = "/v1/predict"

    def __init__(self, fastapi_app: FastAPI, inner: Any) -> None:
        self.fastapi_app, self.inner = fastapi_app, inner
        self._route: Any = None  # resolved on the first request (all routes exist by then)

    def _resolve(self, scope: Any) -> Any:
        from starlette.routing import Match

        probe = dict(scope)
        for route in self.fastapi_app.router.routes:
            match, _ = route.matches(probe)
            if match is not Match.NONE:
                ok = (
                    match is Match.FULL
                    and getattr(route, "path", None) == self.PATH
                    and getattr(getattr(route, "endpoint", None), "__name__", "") == "predict"
                )
                return route if ok else False
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
            or self.fastapi_app.dependency_overrides
            or scope.get("fastapi.telemetry") is not None  # FastAPI's OpenTelemetry is on
        ):
            await self.inner(scope, receive, send)
            return
        if self._route is None:
            self._route = self._resolve(scope)
        ctype = None
        for k, v in scope["headers"]:
            if k == b"content-type":
                ctype = v
                break
        if not self._route or not (ctype == b"application/json" or _json_media_type(ctype)):
            await self.inner(scope, receive, send)
            return
        messages: list[Any] = []
        try:
            while True:
                msg = await receive()
                messages.append(msg)
                if msg["type"] != "http.request" or not msg.get("more_body", False):
                    break
        except Exception as e:  # e.g. BodyTooLarge: FastAPI's body read raises it
            await self.inner(scope, _replay(messages, receive, e), send)
            return
        body = None
        if messages[-1]["type"] == "http.request":
            raw = b"".join(m.get("body", b"") for m in messages)
            try:
                obj = json.loads(raw) if raw else None
                if isinstance(obj, dict):
                    body = PredictRequest.model_validate(obj, from_attributes=True)
            except ValueError:  # JSONDecodeError, pydantic's ValidationError
                body = None
        if body is None:
            await self.inner(scope, _replay(messages, receive), send)
            return
        route = self._route
        scope.setdefault("router", self.fastapi_app.router)
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        await reader_dep(request)
        response = await predict_response(body, request)
        await response(scope, receive, send)


def _run_batch(
    svc: PredictionService, items: list[Any], key_id: str | None, t0: float | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(items):
        try:
            if not isinstance(raw, dict):
                raise InvalidInputError(f"item {i} must be an object {{pair, timestamp?}}")
            try:
                req = PredictRequest.model_validate(raw)
            except Exception as e:  # pydantic.ValidationError
                errs: list[Any] = getattr(e, "errors", list)()
                raise InvalidInputError(_validation_text(errs) or str(e)) from None
            pred: Prediction = svc.predict(req.pair, req.timestamp, key_id=key_id, started=t0)
            out.append({"index": i, "ok": True, "status": 200, "prediction": pred.as_dict()})
        except BqxError as e:
            st, body = error_of(e)
            out.append({"index": i, "ok": False, "status": st, "error": body})
    return out


def _model_action(
    svc: PredictionService,
    pair: str,
    action: str,
    version: str | None,
    actor: str,
    reason: str | None,
) -> dict[str, Any]:
    reg = svc.registry
    prev = reg.production_version(pair)
    if action == "promote":
        assert version is not None
        info = reg.promote(pair, version, actor=actor, reason=reason)
    else:
        info = reg.rollback(pair, actor=actor, reason=reason)
    art = svc.models.reload(pair)
    return {
        "pair": pair,
        "action": action,
        "previous_version": prev,
        "production_version": info.version,
        "serving_version": str(art.version) if art is not None else None,
    }
