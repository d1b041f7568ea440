"""Monitoring API resources (reader role): alerts, quality, summary; unknown pair -> 422."""

from __future__ import annotations

from bqx.state import open_state
from tests.serving.conftest import hdr


def test_monitoring_api(client, keys, settings) -> None:
    open_state(settings).raise_alert("drift", "KL 0.4", severity="critical", pair="EURUSD")
    r = client.get("/v1/alerts", headers=hdr(keys["reader"]))
    assert r.status_code == 200 and r.json()["alerts"][0]["rule"] == "drift"
    r = client.get("/v1/monitoring/summary", headers=hdr(keys["reader"]))
    assert r.json()["open_alerts"]["critical"] == 1
    r = client.get("/v1/monitoring/quality/EURUSD", headers=hdr(keys["reader"]))
    assert r.status_code == 200 and r.json()["rows"] == []
    r = client.get("/v1/monitoring/quality/XXXYYY", headers=hdr(keys["reader"]))
    assert r.status_code == 422 and "EURUSD" in r.json()["detail"]
    assert client.get("/v1/alerts").status_code == 401


def test_drift_endpoint_reports_captured_inputs(client, keys) -> None:
    """A served decision's captured inputs are compared with the version's baseline."""
    import time

    r = client.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(keys["reader"]))
    assert r.status_code == 200
    client.app.state.ctx.service.flush()
    body: dict = {}
    end = r.json()["available_at"]  # the simulated bars are historical: window ends there
    for _ in range(50):  # the capture writer is a background thread
        body = client.get(
            "/v1/monitoring/drift/EURUSD", params={"end": end}, headers=hdr(keys["reader"])
        ).json()
        if body.get("pairs") or body.get("no_baseline"):
            break
        time.sleep(0.1)
    assert body["pair"] == "EURUSD" and body["window_hours"] == 24
    rows = body["pairs"] + body["no_baseline"]
    assert rows and rows[0]["model_version"] == r.json()["model_version"]
    r = client.get("/v1/monitoring/drift/XXXYYY", headers=hdr(keys["reader"]))
    assert r.status_code == 422
    r = client.get("/v1/monitoring/drift/EURUSD?hours=0", headers=hdr(keys["reader"]))
    assert r.status_code == 422
