"""Rollouts through the API: conflicts, shadow logging, hash-sticky canary, transitions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bqx.config import Settings
from tests.rollout.conftest import PAIR


def _key(s: Settings, role: str) -> str:
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    return ApiKeys(open_state(s)).create_key(role, rate=100000)[1]


@pytest.fixture
def api(lsettings: Settings):
    from bqx.serving.app import create_app

    with TestClient(create_app(lsettings)) as c:
        yield c


def _h(k: str) -> dict[str, str]:
    return {"X-API-Key": k}


def test_conflicts_are_409_and_nothing_is_half_applied(
    api: TestClient, lsettings: Settings
) -> None:
    from bqx.registry import Registry, model_name

    admin = _key(lsettings, "admin")
    reg = Registry(lsettings)
    # a pending (unapproved) version and one of another feature set
    c = reg.client
    c.set_model_version_tag(model_name(PAIR), "2", "approval_status", "PendingManualApproval")
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "2"}, headers=_h(admin))
    assert r.status_code == 409 and "not Approved" in r.json()["detail"], r.text
    c.set_model_version_tag(model_name(PAIR), "2", "approval_status", "Approved")
    fsv = reg.get(PAIR, "2").feature_set_version
    c.set_model_version_tag(model_name(PAIR), "2", "feature_set_version", "other")
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "2"}, headers=_h(admin))
    assert r.status_code == 409 and "feature set" in r.json()["detail"], r.text
    c.set_model_version_tag(model_name(PAIR), "2", "feature_set_version", fsv)
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "1"}, headers=_h(admin))
    assert r.status_code == 409 and "already in production" in r.json()["detail"]
    r = api.post("/v1/experiments", json={"pair": PAIR, "a": "2", "b": "2"}, headers=_h(admin))
    assert r.status_code == 422, r.text
    r = api.post(f"/v1/rollouts/{PAIR}/pause", headers=_h(admin))
    assert r.status_code == 404
    svc = api.app.state.ctx.service  # type: ignore[attr-defined]
    assert svc.state.rollouts(PAIR) == []  # none of the refusals left a row
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "2"}, headers=_h(admin))
    assert r.status_code == 201, r.text
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "2"}, headers=_h(admin))
    assert r.status_code == 409 and "already running" in r.json()["detail"]
    r = api.post("/v1/experiments", json={"pair": PAIR, "a": "1", "b": "2"}, headers=_h(admin))
    assert r.status_code == 409 and "already running" in r.json()["detail"]
    assert len(svc.state.rollouts(PAIR)) == 1


def test_shadow_then_sticky_canary_with_arms_in_responses(
    api: TestClient, lsettings: Settings, regime_change: pd.Timestamp
) -> None:
    from bqx.rollout.machine import RolloutManager

    admin = _key(lsettings, "admin")
    readers = [_key(lsettings, "reader") for _ in range(30)]
    svc = api.app.state.ctx.service  # type: ignore[attr-defined]
    ts = (regime_change + pd.Timedelta(minutes=60)).isoformat()
    r = api.post(f"/v1/rollouts/{PAIR}", json={"version": "2", "reason": "t"}, headers=_h(admin))
    assert r.status_code == 201 and r.json()["state"] == "shadow"
    # shadow: production answers everyone; the candidate's answers are logged off-path
    for k in readers[:5]:
        body = api.post("/v1/predict", json={"pair": PAIR, "timestamp": ts}, headers=_h(k)).json()
        assert body["arm"] == "production" and body["model_version"] == "1"
    svc.flush()
    assert svc.router._pool is not None
    svc.router._pool.submit(lambda: None).result()  # the shadow queue has drained
    svc.flush()
    dec = svc.state.read_decisions(PAIR)
    arms = dec["extra"].apply(lambda e: e["arm"])
    assert (arms == "shadow").sum() == 5 and (arms == "production").sum() == 5
    assert set(dec.loc[arms == "shadow", "model_version"]) == {"2"}
    # advance to canary 10 % (no dwell, no sample requirement in this test)
    m = RolloutManager(lsettings, state=svc.state, registry=svc.registry, store=svc.store)
    lsettings.rollout.min_samples = 0
    lsettings.rollout.min_requests = 5
    svc.router.refresh()  # reports this worker's health counters (5 clean shadow calls)
    v = m.evaluate(m.active(PAIR))
    assert v.action == "advance", v.reason
    svc.router.refresh()
    first = {}
    for _ in range(2):  # same client -> same arm, every time
        for k in readers:
            b = api.post("/v1/predict", json={"pair": PAIR, "timestamp": ts}, headers=_h(k)).json()
            assert b["arm"] in ("production", "candidate")
            assert b["model_version"] == ("2" if b["arm"] == "candidate" else "1")
            assert first.setdefault(k, b["arm"]) == b["arm"]
    at10 = {k for k, a in first.items() if a == "candidate"}
    m.evaluate(m.active(PAIR))  # -> 50 %
    svc.router.refresh()
    at50 = {
        k
        for k in readers
        if api.post("/v1/predict", json={"pair": PAIR, "timestamp": ts}, headers=_h(k)).json()[
            "arm"
        ]
        == "candidate"
    }
    assert at10 <= at50 and len(at50) > len(at10)  # ramping only adds clients
    # pause holds, resume continues, promote finishes; every transition has its reason
    assert api.post(f"/v1/rollouts/{PAIR}/pause", headers=_h(admin)).json()["paused"]
    assert m.evaluate(m.active(PAIR)).reason == "paused"
    api.post(f"/v1/rollouts/{PAIR}/resume", headers=_h(admin))
    r = api.post(f"/v1/rollouts/{PAIR}/promote", json={"reason": "ok"}, headers=_h(admin))
    assert r.json()["state"] == "production"
    assert svc.registry.production_version(PAIR) == "2"
    st = api.get(f"/v1/rollouts/{PAIR}", headers=_h(admin)).json()
    acts = [e["action"] for e in st["events"]]
    assert acts == ["start", "advance", "advance", "pause", "resume", "promote"]
    assert all(e["reason"] for e in st["events"])
    hist = svc.state.promotion_history(PAIR)
    assert hist.iloc[-1]["to_version"] == "2" and "rollout" in hist.iloc[-1]["reason"]
    time.sleep(0.3)  # the route is gone; production (now v2) answers with arm production
    body = api.post("/v1/predict", json={"pair": PAIR, "timestamp": ts}, headers=_h(admin)).json()
    assert body["arm"] == "production" and body["model_version"] == "2"


def test_cli_rollout_and_experiment_commands(lsettings: Settings, loop_home: Path) -> None:
    from typer.testing import CliRunner

    from bqx.cli import app

    env = {"BQX_HOME": str(loop_home), "BQX_HORIZON": "10"}
    run = CliRunner().invoke
    r = run(app, ["rollout", "start", PAIR, "2", "--bluegreen", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == [1.0]
    r = run(app, ["experiments", "create", "--pair", PAIR, "--a", "1", "--b", "2"], env=env)
    assert r.exit_code == 2 and "already running" in r.output
    r = run(app, ["rollout", "abort", PAIR, "--reason", "test", "--json"], env=env)
    assert json.loads(r.stdout)["state"] == "aborted"
    r = run(app, ["experiments", "create", "--pair", PAIR, "--a", "1", "--b", "2", "--json",
                  "--min-days", "0"], env=env)  # fmt: skip
    assert r.exit_code == 0, r.output
    eid = json.loads(r.stdout)["id"]
    r = run(app, ["experiments", "status", str(eid), "--json"], env=env)
    assert json.loads(r.stdout)[0]["analysis"]["n_a"] == 0
    r = run(app, ["experiments", "stop", str(eid), "--json"], env=env)
    assert json.loads(r.stdout)["state"] == "stopped"
    r = run(app, ["rollout", "status", PAIR, "--json"], env=env)
    assert [e["action"] for e in json.loads(r.stdout)[0]["events"]] == ["start", "stop"]
    r = run(app, ["ops", "status", "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.stdout)["lease"] is None
