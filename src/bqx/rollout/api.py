"""API resources of rollouts, experiments and the operator (mounted via ROUTER_MODULES).

    GET  /v1/rollouts                      reader  active rollouts (health, quality, history)
    GET  /v1/rollouts/{pair}               reader  the pair's latest rollout
    POST /v1/rollouts/{pair}               admin   {version, kind?, steps?, reason?} start
    POST /v1/rollouts/{pair}/{action}      admin   pause | resume | abort | promote
    POST /v1/experiments                   admin   {pair, a, b, split?, min_samples?, min_days?}
    GET  /v1/experiments/{id}              reader  analysis so far
    POST /v1/experiments/{id}/stop         admin
    POST /v1/ops/retrain                   admin   {pairs, reason?}: on-demand triggers
    GET  /v1/ops/status                    reader  lease, task clocks, triggers

Conflicts (unapproved version, other feature set, a rollout already running, nothing to
pause) are 409 naming the conflict; the same version on both arms is 422.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bqx.rollout import RolloutError
from bqx.serving.app import ApiError, _ctx, _json, require
from bqx.serving.auth import Role

router = APIRouter(tags=["rollouts"])
_reader = [Depends(require(Role.reader))]
_admin = [Depends(require(Role.admin))]


class StartRollout(BaseModel):
    version: str = Field(min_length=1, max_length=64)
    kind: Literal["canary", "bluegreen"] = "canary"
    steps: list[float] | None = Field(None, max_length=20)
    skip_shadow: bool = False
    reason: str | None = Field(None, max_length=500)


class Reason(BaseModel):
    reason: str | None = Field(None, max_length=500)


class CreateExperiment(BaseModel):
    pair: str = Field(min_length=1, max_length=16)
    a: str = Field(min_length=1, max_length=64)
    b: str = Field(min_length=1, max_length=64)
    split: float = Field(0.5, gt=0, lt=1)
    min_samples: int = Field(500, ge=1, le=10_000_000)
    min_days: float = Field(7.0, ge=0, le=3650)


class Retrain(BaseModel):
    pairs: list[str] = Field(min_length=1, max_length=28)
    reason: str | None = Field(None, max_length=500)


def _out(status: int, obj: Any) -> Response:
    """JSON with timestamps as ISO text and NaN/inf as null (statistics can be undefined)."""
    import json

    from bqx.jsonutil import dumps

    return _json(status, json.loads(dumps(obj, indent=None)))


def _actor(request: Request) -> str:
    return f"api-key:{request.scope.get('bqx.key_id')}"


def _mgr(request: Request) -> Any:
    from bqx.rollout.machine import RolloutManager

    svc = _ctx(request).service
    return RolloutManager(svc.settings, state=svc.state, registry=svc.registry, store=svc.store)


async def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args, **kw)
    except RolloutError as e:
        raise ApiError(e.status, e.code, e.message, hint=e.hint) from None


@router.get("/v1/rollouts", dependencies=_reader)
async def rollouts(request: Request) -> Response:
    """Active rollouts with health, paired quality and their transition history."""
    return _out(200, {"rollouts": await _call(_mgr(request).status)})


@router.get("/v1/rollouts/{pair}", dependencies=_reader)
async def rollout(pair: str, request: Request) -> Response:
    """The pair's latest rollout."""
    from bqx.universe import normalize_pair

    rows = await _call(_mgr(request).status, normalize_pair(pair))
    if not rows:
        raise ApiError(404, "not_found", f"no rollout for {normalize_pair(pair)}")
    return _out(200, rows[0])


@router.post("/v1/rollouts/{pair}", dependencies=_admin)
async def start(pair: str, body: StartRollout, request: Request) -> Response:
    """Start a rollout of an approved version (shadow first)."""
    r = await _call(
        _mgr(request).start, pair, body.version, kind=body.kind, steps=body.steps,
        actor=_actor(request), reason=body.reason, skip_shadow=body.skip_shadow,
    )  # fmt: skip
    await _refresh(request)
    return _out(201, r)


@router.post("/v1/rollouts/{pair}/{action}", dependencies=_admin)
async def act(
    pair: str,
    action: Literal["pause", "resume", "abort", "promote"],
    request: Request,
    body: Reason | None = None,
) -> Response:
    """pause / resume / abort / promote the pair's active rollout."""
    m = _mgr(request)
    r = await _call(
        getattr(m, action), pair, actor=_actor(request), reason=body.reason if body else None
    )
    await _refresh(request)
    return _out(200, r)


async def _refresh(request: Request) -> None:
    """This worker follows at once; the others within serve.rollout_refresh_s."""
    svc = _ctx(request).service
    if svc.router is not None:
        await run_in_threadpool(svc.router.refresh)


@router.post("/v1/experiments", dependencies=_admin)
async def create_experiment(body: CreateExperiment, request: Request) -> Response:
    """Start an A/B experiment (hash-sticky split; B's share ``split``)."""
    from bqx.rollout.experiments import ExperimentManager

    e = await _call(
        ExperimentManager(_mgr(request)).create, body.pair, body.a, body.b, split=body.split,
        min_samples=body.min_samples, min_days=body.min_days, actor=_actor(request),
    )  # fmt: skip
    await _refresh(request)
    return _out(201, e)


@router.get("/v1/experiments/{experiment_id}", dependencies=_reader)
async def experiment(request: Request, experiment_id: int = Path(ge=1, le=2**31)) -> Response:
    """The experiment and its analysis so far."""
    from bqx.rollout.experiments import ExperimentManager

    return _out(200, await _call(ExperimentManager(_mgr(request)).status, experiment_id))


@router.post("/v1/experiments/{experiment_id}/stop", dependencies=_admin)
async def stop_experiment(
    request: Request, experiment_id: int = Path(ge=1, le=2**31), body: Reason | None = None
) -> Response:
    """Stop an experiment; production unchanged."""
    from bqx.rollout.experiments import ExperimentManager

    e = await _call(
        ExperimentManager(_mgr(request)).stop, experiment_id, actor=_actor(request),
        reason=body.reason if body else None,
    )  # fmt: skip
    await _refresh(request)
    return _out(200, e)


@router.post("/v1/ops/retrain", dependencies=_admin)
async def retrain(body: Retrain, request: Request) -> Response:
    """Record on-demand retrain triggers; the leading operator runs them (202)."""
    from bqx.ops.operator import request_retrain

    svc = _ctx(request).service
    out = await _call(request_retrain, svc.state, body.pairs, reason=body.reason,
                      registry=svc.registry)  # fmt: skip
    return _out(202, {"triggers": out})


@router.get("/v1/ops/status", dependencies=_reader)
async def ops_status(request: Request) -> Response:
    """Operator lease, task clocks, recent triggers, active rollouts."""
    from bqx.ops.operator import Operator

    svc = _ctx(request).service

    def st() -> dict[str, Any]:
        return Operator(svc.settings, state=svc.state, registry=svc.registry).status()

    return _out(200, await _call(st))
