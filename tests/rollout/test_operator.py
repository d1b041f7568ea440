"""Operator behaviour without traffic: schedule and manual triggers fire once, a training
failure raises a critical alert and leaves production alone, a rollout step is never
applied twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bqx.config import Settings
from bqx.state import StateDB
from tests.rollout.conftest import PAIR


@pytest.fixture
def op(lsettings: Settings):
    from bqx.ops.operator import Operator

    o = Operator(lsettings)
    assert o.acquire()
    return o


def test_schedule_fires_once_per_period(op) -> None:  # type: ignore[no-untyped-def]
    op.settings.ops.retrain_every_days = 1e-9  # due at once
    first = op.collect_triggers()
    assert [t["kind"] for t in first] == ["schedule"]
    op.settings.ops.retrain_every_days = 30
    assert op.collect_triggers() == []  # the next period starts 30 days after this one


def test_training_failure_alerts_and_leaves_production(op) -> None:  # type: ignore[no-untyped-def]
    from bqx.ops.operator import request_retrain

    op.settings.train.val_frac = 0.001  # a validation segment shorter than the purge gap
    [t] = request_retrain(op.state, [PAIR], reason="test", registry=op.registry)
    out = op.run_triggers()
    assert out[0]["status"] == "failed"
    tr = op.state.get_trigger(t["trigger_id"])
    assert tr["status"] == "failed" and tr["parent_version"] == "1"
    al = op.state.read_alerts(open_only=True)
    assert list(al["rule"]) == ["retrain_failed"] and al.iloc[0]["severity"] == "critical"
    assert op.registry.production_version(PAIR) == "1"
    assert op.run_triggers() == []  # a failed trigger is not retried by itself


def test_manual_retrain_route_and_gate(lsettings: Settings, op) -> None:  # type: ignore[no-untyped-def]
    from bqx.serving.app import create_app
    from bqx.serving.auth import ApiKeys

    admin = ApiKeys(op.state).create_key("admin")[1]
    with TestClient(create_app(lsettings)) as api:
        r = api.post("/v1/ops/retrain", json={"pairs": ["eurusd"], "reason": "t"},
                     headers={"X-API-Key": admin})  # fmt: skip
        assert r.status_code == 202, r.text
        r = api.post("/v1/ops/retrain", json={"pairs": ["XXXYYY"]}, headers={"X-API-Key": admin})
        assert r.status_code == 422
    out = op.run_triggers()
    done = [o for o in out if o.get("status") == "done"]
    assert len(done) == 1 and done[0]["parent_version"] == "1"
    gate = next(o for o in out if "gate" in o)["gate"]
    assert gate["n"] >= lsettings.ops.gate_min_rows and gate["p_candidate_worse"] is not None
    assert gate["window"]["purge_bars"] == lsettings.horizon + 1
    assert gate["reason"]
    again = op.run_triggers()  # restart-safe: nothing to do twice
    assert again == []


def test_a_rollout_step_is_never_applied_twice(tmp_path: Path) -> None:
    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    ro = st.create_rollout(
        pair=PAIR, kind="canary", baseline_version="1", candidate_version="2", state="shadow",
        steps=[0.1, 0.5], step=-1, weight=0.0, shadow=True, dwell_s=0, shadow_s=0,
        actor="t", reason="t",
    )  # fmt: skip
    kw = {"action": "advance", "reason": "r", "actor": "a", "state": "canary", "step": 0,
          "weight": 0.1}  # fmt: skip
    assert st.transition_rollout(ro["id"], ro["gen"], **kw) is not None
    # a second operator (or a restarted one) acting on the state it read before
    assert st.transition_rollout(ro["id"], ro["gen"], **kw) is None
    assert list(st.rollout_events(ro["id"])["action"]) == ["start", "advance"]


def test_experiment_winner_is_promoted_in_10_percent_steps(lsettings: Settings) -> None:
    """The decision rule on a planted effect (real analysis of simulated arms), then the
    gradual promotion under the rollout guard, to production."""
    import numpy as np

    from bqx.rollout.experiments import ExperimentManager, analyze, simulate_arms
    from bqx.rollout.machine import RolloutManager, Verdict

    class Planted(ExperimentManager):
        def analysis(self, ro):  # type: ignore[no-untyped-def]
            a, b = simulate_arms(3000, 30, 0.5, np.random.default_rng(3))
            return analyze(a, b, 30)

    lsettings.rollout.min_samples = 0
    m = RolloutManager(lsettings)
    em = Planted(m)
    ex = em.create(PAIR, "1", "2", split=0.5, min_samples=100, min_days=0)
    ro = m.active(PAIR)
    assert ro is not None and ro["kind"] == "experiment" and ro["weight"] == 0.5
    v = em.evaluate(ro, Verdict(PAIR, ro["id"], "hold", ""), "test")
    assert v.action == "decide" and v.reason.startswith("B wins: P(B > A)")
    ro = m.active(PAIR)
    assert ro["steps"] == [0.6, 0.7, 0.8, 0.9, 1.0] and ro["weight"] == 0.6
    e = em.get(ex["id"])
    assert e["state"] == "promoting" and e["winner"] == "b"
    # the guard needs candidate calls before each advance: one worker's real counters
    m.state.report_rollout_health("w1", [(ro["id"], "b", 50, 0, 3.0), (ro["id"], "a", 50, 0, 3.0)])
    weights = []
    for _ in range(6):
        cur = m.active(PAIR)
        if cur is None:
            break
        weights.append(m.evaluate(cur, actor="test").rollout["weight"])
    assert weights == [0.7, 0.8, 0.9, 1.0, 1.0]
    assert m.registry.production_version(PAIR) == "2"
    assert em.get(ex["id"])["state"] == "promoted"
