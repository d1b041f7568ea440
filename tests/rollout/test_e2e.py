"""End to end on the simulator: the loop closes by itself, and a broken candidate is
rolled back while clients keep getting production answers.

Small on purpose (one pair, ~5 days of bars, horizon 10, no dwell times): the whole
chain regime change -> quality alert -> retrain -> gate -> shadow -> canary -> production
runs in-process in well under a minute. Outcomes "mature" at once because the client
replays the last day of stored bars (their realised targets are already in the store).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bqx.config import Settings
from tests.rollout.broken import register_broken
from tests.rollout.conftest import HORIZON, PAIR


def _keys(s: Settings, n: int) -> list[str]:
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    k = ApiKeys(open_state(s))
    return [k.create_key("reader", rate=100000)[1] for _ in range(n)]


@contextmanager
def steady_client(
    api: TestClient, keys: list[str], start: pd.Timestamp, bars: int
) -> Iterator[dict[str, Any]]:
    """A client sending requests without pause, stepping one bar per request through
    ``bars`` bars from ``start`` (cycling), rotating API keys. Records every response."""
    out: dict[str, Any] = {"status": Counter(), "arms": Counter(), "versions": Counter()}
    stop = threading.Event()

    def run() -> None:
        i = 0
        while not stop.is_set():
            ts = (start + pd.Timedelta(minutes=i % bars)).isoformat()
            k = keys[i % len(keys)]
            r = api.post("/v1/predict", json={"pair": PAIR, "timestamp": ts},
                         headers={"X-API-Key": k})  # fmt: skip
            out["status"][r.status_code] += 1
            if r.status_code == 200:
                b = r.json()
                out["arms"][b["arm"]] += 1
                out["versions"][(b["arm"], b["model_version"])] += 1
            i += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join(30)


@pytest.fixture
def api(lsettings: Settings):
    from bqx.serving.app import create_app

    with TestClient(create_app(lsettings)) as c:
        yield c


def _operator(api: TestClient, s: Settings) -> Any:
    from bqx.ops.operator import Operator

    svc = api.app.state.ctx.service  # type: ignore[attr-defined]
    op = Operator(s, state=svc.state, registry=svc.registry, store=svc.store, monitor=None)
    assert op.acquire()
    return op


def _tick_until(op: Any, cond: Any, timeout: float) -> list[dict[str, Any]]:
    ticks = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ticks.append(op.tick())
        if cond():
            return ticks
        time.sleep(op.settings.ops.tick_s)
    raise AssertionError(f"condition not reached; last tick: {ticks[-1] if ticks else None}")


def test_regime_change_closes_the_loop(
    api: TestClient, lsettings: Settings, regime_change: pd.Timestamp
) -> None:
    svc = api.app.state.ctx.service  # type: ignore[attr-defined]
    st, reg = svc.state, svc.registry
    op = _operator(api, lsettings)
    keys = _keys(lsettings, 20)
    start = regime_change + pd.Timedelta(minutes=30)
    # the quality check reads the newest 2 x 60 matured as-of bars; the client cycles
    # through 210 bars, so once it has sent ~90 that window lies within the first 210 bars
    # of regime 2, where v1's live R2 is significantly low at every window end (its upper
    # bound < test R2 - 0.05). With a 900-bar cycle the window's place depended on how far
    # the client had got when the operator ticked: a fast machine was past bar ~240, where
    # v1's R2 is not significantly low, and the alert never came.
    with steady_client(api, keys, start, bars=210) as client:
        # 1. production v1 degrades on the new regime -> critical quality alert -> trigger
        _tick_until(op, lambda: len(st.triggers(status="done")) > 0, 60)
        alerts = st.read_alerts(pair=PAIR)
        q = alerts[alerts["rule"] == "quality_drop"]
        assert len(q) == 1 and q.iloc[0]["severity"] == "critical"
        tr = st.triggers().iloc[0]
        assert tr["kind"] == "quality" and tr["parent_version"] == "1"
        assert pd.notna(q.iloc[0]["resolved_at"])  # the retrain resolved its cause
        assert pd.notna(tr["data_start"]) and pd.notna(tr["data_end"])
        v = str(tr["version"])
        info = reg.client.get_model_version(f"bqx-{PAIR}", v)
        assert info.tags["trigger"] == "quality" and info.tags["parent_version"] == "1"
        # 2. gate -> shadow -> canary 10 % -> 50 % -> production, driven by the operator
        _tick_until(op, lambda: reg.production_version(PAIR) == v, 180)
        time.sleep(0.5)  # a little traffic on the new production version
    assert len(st.triggers()) == 1  # one retrain: no new trigger while it rolls out
    trd = st.get_trigger(int(tr["id"]))
    assert trd["detail"]["gate"]["passed"], trd["detail"]["gate"]
    ro = st.rollouts(PAIR)[0]
    assert ro["state"] == "production" and ro["trigger_id"] == int(tr["id"])
    ev = st.rollout_events(ro["id"])
    assert list(ev["action"]) == ["start", "advance", "advance", "promote"]
    assert list(ev["to_weight"])[1:3] == [0.1, 0.5]
    assert all(isinstance(r, str) and r for r in ev["reason"])
    assert st.promotion_history(PAIR).iloc[-1]["to_version"] == v
    # the client never saw a server error, and saw both arms along the way
    assert set(client["status"]) == {200}, client["status"]
    assert client["arms"]["candidate"] > 0 and client["arms"]["production"] > 0


@pytest.mark.parametrize("mode", ["raises", "garbage", "slow"])
def test_broken_candidate_is_rolled_back(
    api: TestClient, lsettings: Settings, regime_change: pd.Timestamp, mode: str
) -> None:
    from bqx.rollout.machine import RolloutManager

    svc = api.app.state.ctx.service  # type: ignore[attr-defined]
    st, reg = svc.state, svc.registry
    v = register_broken(reg, PAIR, "2", mode)
    op = _operator(api, lsettings)
    m = RolloutManager(lsettings, state=st, registry=reg, store=svc.store)
    # straight to the 10 % canary: clients are really exposed to the broken version
    ro = m.start(PAIR, v, reason=f"deploy ({mode})", skip_shadow=True)
    keys = _keys(lsettings, 40)
    start = regime_change + pd.Timedelta(minutes=30)
    with steady_client(api, keys, start, bars=500) as client:
        _tick_until(op, lambda: st.get_rollout(ro["id"])["state"] == "rolled_back", 90)
        time.sleep(0.5)  # every worker has followed (serve.rollout_refresh_s = 0.2)
        before = Counter(client["arms"])
        time.sleep(0.5)  # traffic after the rollback: production only
        after = Counter(client["arms"]) - before
    end = st.get_rollout(ro["id"])
    ev = st.rollout_events(ro["id"])
    assert "canary" in set(ev["to_state"]), list(ev["action"])  # it did serve clients
    why = ev.iloc[-1]["reason"]
    assert ("p99" in why) if mode == "slow" else ("error rate" in why), why
    assert end["weight"] == 0.0
    al = st.read_alerts(pair=PAIR)
    hit = al[(al["rule"] == "rollout_rollback") & (al["severity"] == "critical")]
    assert len(hit) == 1 and f"v{v}" in hit.iloc[0]["message"]
    assert reg.production_version(PAIR) == "1"  # production untouched
    assert set(client["status"]) == {200}, client["status"]
    if mode != "slow":  # raising / garbage answers never reach a client
        assert {ver for (_arm, ver) in client["versions"]} == {"1"}
    assert after["production"] > 0
    assert lsettings.horizon == HORIZON
