"""API of the decision layer: portfolio positions and pre-trade risk checks (thin shell over
:mod:`bqx.decision.risk`; listed in ``ROUTER_MODULES``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bqx.errors import BqxError
from bqx.serving.app import _ctx, _json, require
from bqx.serving.auth import Role

router = APIRouter()


def risk_manager(request: Request) -> Any:
    """The process's RiskManager (market data cached a few seconds), built on first use."""
    rm = getattr(request.app.state, "risk", None)
    if rm is None:
        from bqx.decision.risk import RiskManager

        svc = _ctx(request).service
        rm = RiskManager(svc.settings, svc.state, svc.store)
        request.app.state.risk = rm
    return rm


def _invalid(e: BqxError) -> Response:
    field = getattr(e, "field", None)
    body: dict[str, Any] = {"error": "invalid_input", "detail": str(e), "field": field}
    if getattr(e, "hint", None):
        body["hint"] = e.hint
    return _json(422, body)


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except ValueError:
        return _json(
            422, {"error": "invalid_json", "detail": "the body is not JSON", "field": None}
        )
    if not isinstance(body, dict):
        return _json(422, {"error": "invalid_input", "detail": "expected an object", "field": None})
    return body


@router.post("/v1/risk/check", tags=["risk"], dependencies=[Depends(require(Role.reader))])
async def risk_check(request: Request) -> Response:
    """Pre-trade check ``{pair, side: BUY|SELL, quantity, price?}`` against every portfolio
    limit: 200 when approved, 403 when rejected (same body: per-limit checks with
    utilisation, rejection reasons with stable codes, ``allowed_quantity``)."""
    from bqx.decision.risk import RiskInputError

    body = await _body(request)
    if isinstance(body, Response):
        return body
    rm = risk_manager(request)
    try:
        out = await run_in_threadpool(rm.check, body)
    except RiskInputError as e:
        return _invalid(e)
    return _json(200 if out["approved"] else 403, out)


@router.get("/v1/positions", tags=["risk"], dependencies=[Depends(require(Role.reader))])
async def get_positions(request: Request) -> Response:
    """Cash, today's realised P&L, open positions and the risk summary (equity, leverage,
    net exposure per currency, VaR)."""
    return _json(200, await run_in_threadpool(_portfolio, request))


def _portfolio(request: Request) -> dict[str, Any]:
    rm = risk_manager(request)
    eng = rm.engine()
    return {**eng.pf.as_dict(), "risk": eng.summary()}


@router.post("/v1/positions", tags=["risk"], dependencies=[Depends(require(Role.trader))])
async def post_positions(request: Request) -> Response:
    """Set ``cash``, ``realized_pnl_today`` and/or ``positions: [{pair, quantity,
    avg_price}]`` (quantity 0 closes) in one transaction; a NaN or malformed value is a
    422 naming the field and nothing is written. Trader role."""
    from bqx.state import PortfolioInputError

    body = await _body(request)
    if isinstance(body, Response):
        return body
    rm = risk_manager(request)
    pos = body.get("positions")
    if pos is not None and not (isinstance(pos, list) and all(isinstance(p, dict) for p in pos)):
        return _json(
            422,
            {
                "error": "invalid_input",
                "detail": "positions must be a list of {pair, quantity, avg_price}",
                "field": "positions",
            },
        )

    def run() -> dict[str, Any]:
        pf = rm.state.update_portfolio(
            cash=body.get("cash"),
            realized_pnl_today=body.get("realized_pnl_today"),
            positions=pos,
            default_cash=rm.settings.risk.initial_cash,
        )
        return pf.as_dict()

    try:
        return _json(200, await run_in_threadpool(run))
    except (PortfolioInputError, BqxError) as e:
        if not isinstance(e, PortfolioInputError):
            e.field = "positions"  # type: ignore[attr-defined]  # unknown pair
        return _invalid(e)


def predict_risk(request: Request, pred: Any) -> dict[str, Any] | None:
    """``risk_check: true`` on predict: the check of a trade in the signal's direction sized
    ``max_position_frac * equity * signal_strength``; ``recommended_quantity`` = its
    allowed quantity (0 for HOLD). Errors become ``{"error": ...}`` (never fail a forecast)."""
    if pred.signal not in ("BUY", "SELL"):
        return {"recommended_quantity": 0, "reason": "signal is HOLD"}
    from bqx.decision.risk import RiskInputError

    rm = risk_manager(request)
    try:
        eng = rm.engine()
        tr = eng._trade(pred.pair, pred.signal, None)
        unit = abs(tr.b)
        target = rm.settings.risk.max_position_frac * eng.equity * pred.signal_strength
        q = int(target // unit) if unit > 0 and eng.equity > 0 else 0
        if q <= 0:
            return {"recommended_quantity": 0, "reason": "signal strength or equity too small"}
        out = eng.check(pred.pair, pred.signal, q)
    except RiskInputError as e:
        return {"error": str(e), "field": e.field}
    return {"recommended_quantity": out["allowed_quantity"], "requested_quantity": q, **out}


def predict_explain(request: Request, pred: Any) -> dict[str, Any]:
    """``explain: true`` on predict: the explanation now (also stored, so the worker skips
    this decision)."""
    from bqx.decision.forensics import explain

    svc = _ctx(request).service
    art = svc.model(pred.pair)
    t = pred.timestamp + pd.Timedelta(svc.settings.interval)
    fv = svc.features(pred.pair, t, only=getattr(art, "needed_columns", None))
    d = {
        "decision_id": pred.decision_id,
        "prediction": pred.prediction,
        "feature_hash": pred.feature_hash,
        "signal": pred.signal,
        "request_time": None,
        "asof_ts": pred.timestamp.isoformat(),
        "key_id": request.scope.get("bqx.key_id"),
        "extra": {"regime": pred.regime, "route": "/v1/predict"},
    }
    rec = explain(art, fv.values, decision=d, feature_hash=fv.hash)
    if svc.log_decisions:
        svc.state.save_forensics(pred.decision_id, rec)
    return rec


def predict_extras(request: Request, pred: Any, body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.risk_check:
        out["risk"] = predict_risk(request, pred)
    if body.explain:
        out["explanation"] = predict_explain(request, pred)
    return out


@router.get(
    "/v1/forensics/{decision_id}", tags=["forensics"], dependencies=[Depends(require(Role.reader))]
)
async def get_forensics(decision_id: str, request: Request) -> Response:
    """The explanation of a decision: 200; 202 with ``Retry-After`` while the worker has not
    reached it; 404 for an unknown id."""
    st = _ctx(request).service.state

    def run() -> tuple[dict[str, Any] | None, bool]:
        row = st.read_forensics(decision_id)
        return row, (row is not None or st.decision_exists(decision_id))

    row, known = await run_in_threadpool(run)
    if row is not None:
        return _json(200, row)
    if known:
        return _json(
            202,
            {
                "decision_id": decision_id,
                "status": "pending",
                "detail": "the forensics worker has not explained this decision yet",
            },
            headers={"Retry-After": "2"},
        )
    return _json(404, {"error": "not_found", "detail": f"unknown decision id {decision_id!r}"})


@router.get("/v1/regime/{pair}", tags=["regime"], dependencies=[Depends(require(Role.reader))])
async def regime_history(pair: str, request: Request, bars: int = 240) -> Response:
    """The pair's regime history: filtered probabilities at each of the last ``bars`` bars
    (each computed from bars <= its own time), from the production model's regime model."""
    from bqx.universe import normalize_pair

    if not 1 <= bars <= 5000:
        return _json(
            422, {"error": "invalid_input", "detail": "bars must be in [1, 5000]", "field": "bars"}
        )
    svc = _ctx(request).service

    def run() -> dict[str, Any]:
        p = normalize_pair(pair)
        model = getattr(svc.model(p), "regime", None)
        if model is None:
            return {"pair": p, "history": [], "detail": "the production model has no regime model"}
        snap, _ = svc._snapshot_for(None)
        panel = snap.panel
        P = model.filter(panel.close, panel.ts, panel.pairs)[-bars:]
        ts = panel.ts[-bars:]
        hist = []
        for t, row in zip(ts, P, strict=True):
            d = model.describe(row)
            hist.append({"timestamp": pd.Timestamp(int(t), tz="UTC").isoformat(), **d})
        return {"pair": p, "history": hist}

    return _json(200, await run_in_threadpool(run))
