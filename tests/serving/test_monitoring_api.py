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
