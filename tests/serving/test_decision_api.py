"""Decision layer through the API: regime in predictions, positions, risk checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serving.conftest import hdr


@pytest.fixture
def regime_client(client):
    """The served EURUSD model with a real regime model fitted on its training bars."""
    from bqx.decision.regime import fit_for_artifact

    svc = client.app.state.ctx.service
    art = svc.model("EURUSD")
    svc.settings.regime.restarts = 1
    fit_for_artifact(art, svc.settings, svc.store)
    assert art.regime is not None
    return client


def test_predict_carries_the_filtered_regime_and_logs_it(regime_client, keys, settings):
    r = regime_client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"]))
    assert r.status_code == 200, r.text
    body = r.json()
    reg = body["regime"]
    assert set(reg["probabilities"]) == {"bull", "bear", "sideways"}
    assert sum(reg["probabilities"].values()) == pytest.approx(1.0)
    assert 0 <= reg["entropy_bits"] <= np.log2(3) + 1e-12
    assert reg["state"] == max(reg["probabilities"], key=reg["probabilities"].get)
    # the same number as the batch filter over the stored closes
    svc = regime_client.app.state.ctx.service
    model = svc.model("EURUSD").regime
    bars = svc.store.read()  # every pair: the market's volatility is an input
    from bqx.features.panel import Panel

    panel = Panel.from_bars(bars)
    full = model.describe(model.filter(panel.close, panel.ts, panel.pairs)[-1])
    assert reg["probabilities"] == pytest.approx(full["probabilities"], abs=1e-9)
    # and in the decision log
    svc.flush()
    log = svc.state.read_decisions(pair="EURUSD")
    extra = log.loc[log["decision_id"] == body["decision_id"], "extra"].iloc[0]
    assert extra["regime"]["state"] == reg["state"]
    # the history endpoint ends with the same bar's probabilities
    h = regime_client.get("/v1/regime/EURUSD?bars=30", headers=hdr(keys["reader"])).json()
    assert len(h["history"]) == 30
    assert h["history"][-1]["probabilities"] == pytest.approx(reg["probabilities"], abs=1e-9)


def test_predict_without_regime_model_says_null(client, keys):
    r = client.post("/v1/predict", json={"pair": "USDJPY"}, headers=hdr(keys["reader"]))
    assert r.status_code == 200 and r.json()["regime"] is None


def test_positions_and_risk_check(client, keys):
    t, rd = hdr(keys["trader"]), hdr(keys["reader"])
    assert client.post("/v1/positions", json={"cash": 100_000}, headers=rd).status_code == 403
    r = client.post(
        "/v1/positions",
        json={
            "cash": 100_000,
            "positions": [{"pair": "EURUSD", "quantity": 20_000, "avg_price": 1.09}],
        },
        headers=t,
    )
    assert r.status_code == 200, r.text
    ok = client.post(
        "/v1/risk/check", json={"pair": "GBPUSD", "side": "BUY", "quantity": 100}, headers=rd
    )
    assert ok.status_code == 200 and ok.json()["approved"], ok.text
    big = client.post(
        "/v1/risk/check", json={"pair": "EURUSD", "side": "BUY", "quantity": 1_000_000}, headers=rd
    )
    assert big.status_code == 403
    body = big.json()
    assert not body["approved"] and "POSITION_LIMIT" in {x["code"] for x in body["reasons"]}
    assert 0 <= body["allowed_quantity"] < 1_000_000
    again = client.post(
        "/v1/risk/check",
        json={"pair": "EURUSD", "side": "BUY", "quantity": body["allowed_quantity"]},
        headers=rd,
    )
    assert again.status_code == 200


@pytest.mark.parametrize(
    "body,field",
    [
        ({"pair": "EURUSD", "side": "BUY", "quantity": -1}, "quantity"),
        ({"pair": "EURUSD", "side": "BUY", "quantity": 1e300}, "quantity"),
        ({"pair": "FOOBAR", "side": "BUY", "quantity": 1}, "pair"),
        ({"pair": "EURUSD", "side": "BUY", "quantity": 1, "price": -2}, "price"),
    ],
)
def test_risk_check_bad_input_is_422_naming_the_field(client, keys, body, field):
    r = client.post("/v1/risk/check", json=body, headers=hdr(keys["reader"]))
    assert r.status_code == 422 and r.json()["field"] == field


def test_nan_portfolio_update_is_422_and_writes_nothing(client, keys):
    t = hdr(keys["trader"])
    client.post("/v1/positions", json={"cash": 50_000}, headers=t)
    r = client.post(
        "/v1/positions",
        content='{"cash": 1, "positions": [{"pair": "EURUSD", "quantity": NaN, "avg_price": 1}]}',
        headers={**t, "content-type": "application/json"},
    )
    assert r.status_code == 422 and "quantity" in r.json()["field"]
    got = client.get("/v1/positions", headers=t).json()
    assert got["cash"] == 50_000 and got["positions"] == []


def test_predict_with_risk_check(client, keys):
    r = client.post(
        "/v1/predict", json={"pair": "EURUSD", "risk_check": True}, headers=hdr(keys["reader"])
    )
    assert r.status_code == 200, r.text
    risk = r.json()["risk"]
    assert risk["recommended_quantity"] >= 0
    if r.json()["signal"] != "HOLD":
        assert risk["recommended_quantity"] == risk["allowed_quantity"]


def test_forensics_worker_follows_the_decision_log(client, keys, settings):
    from bqx.decision.forensics import ForensicsWorker

    rd = hdr(keys["reader"])
    ids = []
    for pair in ("EURUSD", "USDJPY", "EURUSD"):
        r = client.post("/v1/predict", json={"pair": pair}, headers=rd)
        assert r.status_code == 200
        ids.append(r.json()["decision_id"])
    svc = client.app.state.ctx.service
    svc.flush()
    assert client.get(f"/v1/forensics/{ids[0]}", headers=rd).status_code == 202
    assert client.get("/v1/forensics/no-such-id", headers=rd).status_code == 404
    # the worker was "down" while the decisions were made: it catches up, once; throttled
    # to half a core it pauses as long as it computed
    w = ForensicsWorker(settings, state=svc.state)
    res = w.run_once(max_cpu_share=0.5)
    assert res["explained"] >= 3 and res["failed"] == 0
    # the bars of the whole batch came from one store read, none per decision
    assert w.bars is not None and w.bars.loads == 1 and w.bars.fallbacks == 0
    assert 0 < res["throttle_sleep_seconds"] < res["seconds"]
    assert ForensicsWorker(settings, state=svc.state).run_once()["explained"] == 0
    for i in ids:
        r = client.get(f"/v1/forensics/{i}", headers=rd)
        assert r.status_code == 200
        ex = r.json()["explanation"]
        assert ex["additive"] and ex["feature_hash_match"] is True
        assert ex["additivity_error"] < 1e-6
    # a stale window (bars corrected after the worker read them): the hash check sees it,
    # the worker drops its window and explains from the store itself
    import pandas as pd

    r = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=rd)
    svc.flush()
    (d,) = [
        x for x in svc.state.pending_forensics(50) if x["decision_id"] == r.json()["decision_id"]
    ]
    w2 = ForensicsWorker(settings, state=svc.state)
    step = pd.Timedelta(settings.interval)
    assert w2.bars is not None
    w2.bars.load(pd.Timestamp(d["asof_ts"]) + step, pd.Timestamp(d["asof_ts"]) + step)
    w2.bars.frame["close"] *= 1.001
    ex = w2.explain_decision(d)
    assert ex["feature_hash_match"] is True and w2.bars.frame is None


def test_predict_explain_is_synchronous_and_stored(client, keys):
    rd = hdr(keys["reader"])
    r = client.post("/v1/predict", json={"pair": "GBPUSD", "explain": True}, headers=rd)
    assert r.status_code == 200, r.text
    ex = r.json()["explanation"]
    assert ex["additive"] and ex["model_output"] == pytest.approx(r.json()["prediction"])
    got = client.get(f"/v1/forensics/{r.json()['decision_id']}", headers=rd)
    assert got.status_code == 200
