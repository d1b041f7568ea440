"""The API through FastAPI's TestClient: predictions, auth and roles, limits, errors, the
decision log, live bars, models admin, features, health and metrics."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bqx.serving.app import create_app
from bqx.state import open_state

from .conftest import create_key, hdr, make_settings

PREDICT_FIELDS = {
    "decision_id",
    "pair",
    "timestamp",
    "requested_timestamp",
    "available_at",
    "regime",
    "horizon_minutes",
    "prediction",
    "confidence_interval",
    "confidence_level",
    "signal",
    "signal_strength",
    "signal_reason",
    "threshold",
    "features_used",
    "model",
    "model_version",
    "feature_hash",
    "feature_cache_hit",
    "latency_ms",
    "arm",  # which model answered (production unless a rollout or experiment runs)
}


def newest(client: TestClient) -> pd.Timestamp:
    snap = client.app.state.ctx.service.bars.snapshot
    return snap.last_ts


# -- predictions --------------------------------------------------------------------------
def test_predict_shape_and_values(client, keys):
    # the bar cache loads in the background: until it has, a prediction is computed from
    # the store and not cached (on a loaded CI box the first request can come first)
    deadline = time.monotonic() + 60
    while client.app.state.ctx.service.bars.snapshot is None and time.monotonic() < deadline:
        time.sleep(0.05)
    r = client.post("/v1/predict", json={"pair": "eurusd"}, headers=hdr(keys["reader"]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == PREDICT_FIELDS
    assert d["pair"] == "EURUSD"
    assert pd.Timestamp(d["timestamp"]) == newest(client)
    assert d["horizon_minutes"] == 60.0
    lo, hi = d["confidence_interval"]
    assert lo <= d["prediction"] <= hi
    assert d["confidence_level"] == 0.9
    assert d["signal"] in ("BUY", "SELL", "HOLD") and 0 <= d["signal_strength"] <= 1
    assert d["model_version"] == "1" and d["model"] == "ridge"
    assert d["features_used"] > 0
    # the same bar again: features and prediction come from the cache, same numbers
    d2 = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"])).json()
    assert d2["feature_cache_hit"] is True
    assert d2["prediction"] == d["prediction"] and d2["decision_id"] != d["decision_id"]


def test_predict_at_timestamp_uses_last_bar_closed_by_it(client, keys):
    t = newest(client) - pd.Timedelta(minutes=30)
    req = (t + pd.Timedelta(seconds=119)).isoformat()  # bar t closed at t + 60 s
    d = client.post(
        "/v1/predict", json={"pair": "USDJPY", "timestamp": req}, headers=hdr(keys["reader"])
    ).json()
    assert pd.Timestamp(d["timestamp"]) == t
    assert pd.Timestamp(d["available_at"]) == t + pd.Timedelta(minutes=1)
    assert pd.Timestamp(d["requested_timestamp"]) == pd.Timestamp(req)


def test_bearer_header_works(client, keys):
    r = client.post(
        "/v1/predict",
        json={"pair": "EURUSD"},
        headers={"Authorization": f"Bearer {keys['reader']}"},
    )
    assert r.status_code == 200


def test_prediction_matches_the_batch_feature_path(client, keys, settings):
    """Online features from the in-memory window == batch features over the whole history."""
    from bqx import features as F
    from bqx.data.store import open_store
    from bqx.registry import Registry

    t = newest(client) - pd.Timedelta(minutes=90)
    d = client.post(
        "/v1/predict",
        json={"pair": "GBPUSD", "timestamp": (t + pd.Timedelta(minutes=1)).isoformat()},
        headers=hdr(keys["reader"]),
    ).json()
    bars = open_store(settings=settings).read()
    X = F.build(bars, "GBPUSD", start=t, end=t)
    art = Registry(settings).load("GBPUSD")
    assert d["prediction"] == pytest.approx(float(art.predict_frame(X)[0]), rel=1e-9, abs=1e-15)


# -- auth and roles -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "missing"),
        ({"X-API-Key": "nope"}, "malformed"),
        ({"X-API-Key": "bqx_0123456789ab_" + "a" * 43}, "unknown"),
    ],
)
def test_401_without_or_with_wrong_key(client, headers, reason):
    r = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized" and r.json()["detail"]


def test_revoked_key_is_refused(client, settings):
    from bqx.serving.auth import ApiKeys

    keys = ApiKeys(open_state(settings))
    kid, key = keys.create_key("reader")
    assert client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)).status_code == 200
    keys.revoke(kid)
    client.app.state.ctx.keys.invalidate(kid)  # another process: within the 5 s TTL
    assert client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)).status_code == 401


def test_roles(client, keys):
    bar = {
        "pair": "EURUSD",
        "ts": "2023-12-01T10:00:00Z",
        "open": 1.1,
        "high": 1.2,
        "low": 1.0,
        "close": 1.15,
    }
    r = client.post("/v1/bars", json={"bars": [bar]}, headers=hdr(keys["reader"]))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert "trader" in r.json()["detail"]
    r = client.post("/v1/bars", json={"bars": [bar]}, headers=hdr(keys["trader"]))
    assert r.status_code == 200, r.text
    for k in ("reader", "trader"):
        r = client.post("/v1/models/EURUSD/rollback", json={}, headers=hdr(keys[k]))
        assert r.status_code == 403
    assert client.get("/v1/models/EURUSD", headers=hdr(keys["reader"])).status_code == 200
    assert client.get("/v1/features/EURUSD", headers=hdr(keys["reader"])).status_code == 200


def test_429_under_a_burst_with_retry_after(settings):
    key = create_key(settings, "reader", rate=5)
    with TestClient(create_app(settings)) as c:
        codes = [
            c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)) for _ in range(12)
        ]
    statuses = [r.status_code for r in codes]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    r429 = next(r for r in codes if r.status_code == 429)
    assert r429.json()["error"] == "rate_limited"
    assert int(r429.headers["Retry-After"]) >= 1


def test_cors_allow_list(home):
    s = make_settings(home, cors_origins=["https://ok.example"])
    with TestClient(create_app(s)) as c:
        pre = {
            "Origin": "https://ok.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        }
        r = c.options("/v1/predict", headers=pre)
        assert r.headers.get("access-control-allow-origin") == "https://ok.example"
        r = c.options("/v1/predict", headers={**pre, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


# -- errors: every bad input is a documented 4xx with a JSON body --------------------------
@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"pair": "XXXYYY"}, 422, "unknown_pair"),
        ({"pair": "USDEUR"}, 422, "unknown_pair"),
        ({"pair": 42}, 422, "invalid_request"),
        ({"pair": None}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timestamp": "yesterday-ish"}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timestamp": "2024-13-45T99:00:00"}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timestamp": [1, 2]}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timstamp": "2024-01-02"}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timestamp": "0199-01-02T10:00:00Z"}, 422, "invalid_request"),
        ({"pair": "EURUSD", "timestamp": "9999-01-02T10:00:00Z"}, 422, "invalid_request"),
        ({"pair": "AUDNZD"}, 404, "no_production_model"),
        ({"pair": "EURUSD", "timestamp": "2020-01-01T00:00:00Z"}, 404, "no_data"),
        ({"pair": "EURUSD", "timestamp": "2030-01-01T00:00:00Z"}, 409, "stale_data"),
    ],
)
def test_bad_predict_inputs(client, keys, body, status, code):
    r = client.post("/v1/predict", json=body, headers=hdr(keys["reader"]))
    assert r.status_code == status, r.text
    d = r.json()
    assert d["error"] == code and isinstance(d["detail"], str) and d["detail"]


def test_stale_error_says_what_to_do(client, keys):
    t = newest(client) + pd.Timedelta(minutes=30)
    r = client.post(
        "/v1/predict",
        json={"pair": "EURUSD", "timestamp": t.isoformat()},
        headers=hdr(keys["reader"]),
    )
    assert r.status_code == 409
    d = r.json()
    assert "tolerance" in d["detail"] and "POST /v1/bars" in d["hint"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'"EURUSD"',
        b"null",
        b'{"pair": "EURUSD", "timestamp": 1e400}',
        '{"pair": "EUR\u0000USD"}'.encode(),
    ],
)
def test_malformed_bodies(client, keys, raw):
    r = client.post(
        "/v1/predict",
        content=raw,
        headers={**hdr(keys["reader"]), "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json() and "detail" in r.json()


def test_body_too_large(home, keys):
    s = make_settings(home, max_body_bytes=2000)
    with TestClient(create_app(s)) as c:
        big = {"items": [{"pair": "EURUSD"}] * 200}
        r = c.post("/v1/predict/batch", json=big, headers=hdr(keys["reader"]))
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"


def test_unknown_route_and_method(client, keys):
    r = client.get("/v1/nothing", headers=hdr(keys["reader"]))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/v1/predict", headers=hdr(keys["reader"]))
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_features_errors(client, keys):
    h = hdr(keys["reader"])
    assert client.get("/v1/features/NOPE", headers=h).json()["error"] == "unknown_pair"
    r = client.get("/v1/features/EURUSD", params={"timestamp": "garbage"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = client.get("/v1/features/EURUSD", params={"timestamp": "0199-01-02"}, headers=h)
    assert r.status_code == 422 and "supported range 1677" in r.json()["detail"]


def test_no_data_and_empty_store(tmp_path, keys):
    s = make_settings(tmp_path / "empty")
    key = create_key(s, "reader")
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key))
        assert r.status_code == 404 and r.json()["error"] == "no_data"
        assert c.get("/readyz").status_code == 503


# -- batch ----------------------------------------------------------------------------------
def test_batch_reports_per_item_errors(client, keys):
    items = [
        {"pair": "EURUSD"},
        {"pair": "NOPE"},
        {"pair": "GBPUSD", "timestamp": "bad"},
        {"pair": "AUDNZD"},
        "not an object",
        {"pair": "USDJPY"},
    ]
    r = client.post("/v1/predict/batch", json={"items": items}, headers=hdr(keys["reader"]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["count"] == 6 and d["failed"] == 4
    ok = [x["ok"] for x in d["results"]]
    assert ok == [True, False, False, False, False, True]
    codes = [x.get("error", {}).get("error") for x in d["results"]]
    assert codes[1:5] == [
        "unknown_pair",
        "invalid_request",
        "no_production_model",
        "invalid_request",
    ]
    assert [x["status"] for x in d["results"]] == [200, 422, 422, 404, 422, 200]
    assert d["results"][0]["prediction"]["pair"] == "EURUSD"


def test_batch_too_large(home, keys):
    s = make_settings(home, max_batch=3)
    with TestClient(create_app(s)) as c:
        r = c.post(
            "/v1/predict/batch",
            json={"items": [{"pair": "EURUSD"}] * 4},
            headers=hdr(keys["reader"]),
        )
        assert r.status_code == 422 and r.json()["error"] == "batch_too_large"


# -- decision log ---------------------------------------------------------------------------
def test_every_prediction_is_logged(settings, keys):
    app = create_app(settings)
    ids = []
    with TestClient(app) as c:
        for pair in ("EURUSD", "USDJPY", "EURUSD"):
            ids.append(
                c.post("/v1/predict", json={"pair": pair}, headers=hdr(keys["reader"])).json()
            )
        b = c.post(
            "/v1/predict/batch", json={"items": [{"pair": "GBPUSD"}]}, headers=hdr(keys["reader"])
        ).json()
        ids.append(b["results"][0]["prediction"])
    # the lifespan shutdown flushed the writer
    df = open_state(settings).read_decisions()
    by_id = df.set_index("decision_id")
    assert set(by_id.index) >= {d["decision_id"] for d in ids}
    kid = keys["reader"].split("_")[1]
    for d in ids:
        row = by_id.loc[d["decision_id"]]
        assert row["pair"] == d["pair"] and row["key_id"] == kid
        assert row["asof_ts"] == pd.Timestamp(d["timestamp"])
        assert row["prediction"] == pytest.approx(d["prediction"])
        assert row["interval_lo"] == pytest.approx(d["confidence_interval"][0])
        assert row["signal"] == d["signal"] and row["signal_reason"] == d["signal_reason"]
        assert (
            row["model_version"] == d["model_version"] and row["model_name"] == f"bqx-{d['pair']}"
        )
        assert row["horizon"] == 60 and row["feature_hash"] == d["feature_hash"]
        assert row["latency_ms"] > 0 and row["confidence_level"] == 0.9


# -- live bars ------------------------------------------------------------------------------
def _next_bar(client: TestClient, pair: str) -> dict[str, object]:
    snap = client.app.state.ctx.service.bars.snapshot
    j = snap.panel.pairs.index(pair)
    c = float(snap.panel.close[-1, j])
    return {
        "pair": pair,
        "open": c,
        "high": c * 1.0002,
        "low": c * 0.9998,
        "close": c * 1.0001,
        "volume": 10.0,
        "spread": 0.00002,
    }


def test_push_bars_updates_store_and_predictions(client, keys, settings):
    from bqx.data.store import open_store

    # the simulated week ends Friday 21:59 UTC; push Sunday-evening bars for every pair
    t = pd.Timestamp("2024-01-07T22:00:00Z")
    bars = []
    for pair in client.app.state.ctx.service.bars.snapshot.panel.pairs:
        b = _next_bar(client, pair)
        bars.append({**b, "ts": t.isoformat()})
    r = client.post("/v1/bars", json={"bars": bars}, headers=hdr(keys["trader"]))
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 28 and r.json()["cache_updated"] is True
    assert newest(client) == t
    d = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"])).json()
    assert pd.Timestamp(d["timestamp"]) == t
    assert open_store(settings=settings).latest()["EURUSD"] == t
    # idempotent
    r = client.post("/v1/bars", json={"bars": bars}, headers=hdr(keys["trader"]))
    assert r.json()["unchanged"] == 28


def test_push_bad_bars_writes_nothing(client, keys, settings):
    from bqx.data.store import open_store

    before = open_store(settings=settings).latest()
    bars = [
        {
            "pair": "EURUSD",
            "ts": "2024-01-08T10:00:00Z",
            "open": 1.1,
            "high": 1.0,
            "low": 1.2,
            "close": 1.1,
        },
        {
            "pair": "EURUSD",
            "ts": "2024-01-08T10:01:00Z",
            "open": 1.1,
            "high": 1.2,
            "low": 1.0,
            "close": 1.1,
        },
        {
            "pair": "XXXYYY",
            "ts": "2024-01-08T10:02:30Z",
            "open": 1,
            "high": 1,
            "low": 1,
            "close": 1,
        },
    ]
    r = client.post("/v1/bars", json={"bars": bars}, headers=hdr(keys["trader"]))
    assert r.status_code == 422
    d = r.json()
    assert d["error"] == "invalid_bars" and "nothing was written" in d["detail"]
    reasons = {(i["row"], i["reason"]) for i in d["issues"]}
    assert (1, "ohlc_inconsistent") in reasons and (3, "unknown_pair") in reasons
    assert (3, "misaligned_ts") in reasons
    assert open_store(settings=settings).latest() == before
    r = client.post("/v1/bars", json={"bars": [{"pair": "EURUSD"}]}, headers=hdr(keys["trader"]))
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/bars", json={"bars": []}, headers=hdr(keys["trader"]))
    assert r.status_code == 422


def test_bars_written_by_another_process_are_picked_up(client, keys, settings):
    from bqx.data.store import open_store

    t = pd.Timestamp("2024-01-07T22:00:00Z")
    rows = [{**_next_bar(client, p), "ts": t} for p in ("EURUSD", "USDJPY")]
    open_store(settings=settings).upsert(pd.DataFrame(rows))
    deadline = time.monotonic() + 10
    while newest(client) != t and time.monotonic() < deadline:
        time.sleep(0.1)
    assert newest(client) == t


# -- models: LRU and promotion ---------------------------------------------------------------
def test_lru_eviction_with_cache_size_2(home, keys):
    s = make_settings(home, cache_size=2)
    with TestClient(create_app(s)) as c:
        for pair in ("EURUSD", "USDJPY", "GBPUSD"):
            assert (
                c.post("/v1/predict", json={"pair": pair}, headers=hdr(keys["reader"])).status_code
                == 200
            )
        models = c.app.state.ctx.service.models
        assert models.pairs() == ["USDJPY", "GBPUSD"]
        assert models.stats.evictions == 1 and models.stats.misses == 3
        c.post("/v1/predict", json={"pair": "GBPUSD"}, headers=hdr(keys["reader"]))
        assert models.stats.hits >= 1 and models.stats.misses == 3
        c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"]))
        assert models.pairs() == ["GBPUSD", "EURUSD"] and models.stats.misses == 4
        metrics = c.get("/metrics").text
        assert "bqx_model_cache_evictions_total 2.0" in metrics
        assert "bqx_model_cache_misses_total 4.0" in metrics


def test_promotion_by_another_process_is_picked_up(client, keys, settings):
    from bqx.registry import Registry

    h = hdr(keys["reader"])
    assert (
        client.post("/v1/predict", json={"pair": "EURUSD"}, headers=h).json()["model_version"]
        == "1"
    )
    Registry(settings).promote("EURUSD", "2", actor="elsewhere", reason="test")
    time.sleep(settings.serve.alias_ttl_s + 0.1)
    d = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=h).json()
    assert d["model_version"] == "2"


def test_admin_promote_and_rollback(client, keys):
    h = hdr(keys["admin"])
    r = client.post("/v1/models/EURUSD/promote", json={"version": "2", "reason": "t"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "pair": "EURUSD",
        "action": "promote",
        "previous_version": "1",
        "production_version": "2",
        "serving_version": "2",
    }
    d = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=h).json()
    assert d["model_version"] == "2"
    r = client.post("/v1/models/EURUSD/rollback", json={"reason": "t"}, headers=h)
    assert r.json()["production_version"] == "1" and r.json()["serving_version"] == "1"
    assert (
        client.post("/v1/predict", json={"pair": "EURUSD"}, headers=h).json()["model_version"]
        == "1"
    )
    hist = client.get("/v1/models/EURUSD", headers=h).json()["history"]
    assert [x["action"] for x in hist][-2:] == ["promote", "rollback"]
    assert hist[-1]["actor"].startswith("api-key:")
    # errors
    r = client.post("/v1/models/EURUSD/promote", json={"version": "9"}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "model_not_found"
    r = client.post("/v1/models/USDJPY/rollback", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    r = client.post("/v1/models/EURUSD/promote", json={"version": 2.5}, headers=h)
    assert r.status_code == 422


def test_models_listing(client, keys):
    d = client.get("/v1/models", headers=hdr(keys["reader"])).json()
    assert sorted(m["pair"] for m in d["production"]) == ["EURUSD", "GBPUSD", "USDJPY"]
    assert d["versions"] == 4


# -- features, health, metrics, docs ---------------------------------------------------------
def test_features_endpoint(client, keys):
    from bqx import features as F

    h = hdr(keys["reader"])
    d = client.get("/v1/features/EURUSD", headers=h).json()
    assert d["feature_set_version"] == F.feature_set_version()
    assert d["n_features"] == len(F.columns()) == len(d["features"])
    assert d["source"] == "cache" and d["cache_hit"] is False
    assert client.get("/v1/features/EURUSD", headers=h).json()["cache_hit"] is True
    values = np.array([np.nan if v is None else v for v in d["features"].values()])
    assert np.isfinite(values).mean() > 0.9
    d2 = client.get("/v1/features/EURUSD", params={"values": "false"}, headers=h).json()
    assert "features" not in d2 or d2["features"] is None


def test_health_ready_metrics_docs(client, keys):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"]))
    client.post("/v1/predict", json={"pair": "EURUSD"}, headers={})
    m = client.get("/metrics").text
    assert 'bqx_http_requests_total{method="POST",route="/v1/predict",status="200"}' in m
    assert 'bqx_http_requests_total{method="POST",route="/v1/predict",status="401"}' in m
    assert 'bqx_predictions_total{pair="EURUSD",signal=' in m
    assert 'bqx_auth_failures_total{reason="missing"} 1.0' in m
    assert "bqx_model_load_seconds_count 1.0" in m
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "/v1/models/{pair}/promote" in spec["paths"]


def test_errors_never_leak_500_for_fuzzed_inputs(client, keys):
    """A small fuzz of types in every body field of every POST route."""
    h = hdr(keys["admin"])
    values = [None, 0, -1, 1.5, "", "x" * 300, [], {}, True, "2024-01-01", "EURUSD"]
    routes = {
        "/v1/predict": ["pair", "timestamp"],
        "/v1/predict/batch": ["items"],
        "/v1/bars": ["bars"],
        "/v1/models/EURUSD/promote": ["version", "reason"],
    }
    for route, fields in routes.items():
        for f in fields:
            for v in values:
                r = client.post(
                    route,
                    content=json.dumps({f: v}),
                    headers={**h, "Content-Type": "application/json"},
                )
                assert r.status_code < 500, (route, f, v, r.text)
                if r.status_code >= 400:
                    assert r.json()["error"] and r.json()["detail"]
