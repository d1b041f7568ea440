"""Event stream against a real Redis started by the test on a free port; outage included."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from bqx.state import StateDB, utcnow

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port: int, d) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed")
    p = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(d),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            return p
        except redis.ConnectionError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("redis did not start")


def _log(st: StateDB, ids: list[str]) -> None:
    st.log_decisions(
        [
            {"decision_id": i, "request_time": utcnow(), "pair": "EURUSD", "prediction": 0.001}
            for i in ids
        ]
    )


def test_no_event_lost_or_duplicated_across_a_broker_outage(tmp_path):
    import redis

    from bqx.events import RedisStreamsBus, relay_once

    port = _free_port()
    proc = _start(port, tmp_path)
    st = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    st.create_tables()
    bus = RedisStreamsBus(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    try:
        _log(st, [f"a{i}" for i in range(5)])
        st.enqueue_event("models", "rollout:1", {"step": 1})
        res = relay_once(st, bus)
        assert res["sent"] == 6 and res["broker_error"] is None
        # outage: our own broker stops; decisions keep coming and wait in the outbox
        proc.terminate()
        proc.wait(10)
        _log(st, [f"b{i}" for i in range(7)])
        res = relay_once(st, bus)
        assert res["broker_error"] and res["pending"] == 7
        proc = _start(port, tmp_path)  # back (append-only file: the stream survived)
        res = relay_once(st, bus)
        assert res["sent"] == 7 and res["pending"] == 0
        # a re-send of everything (as after a crash before marking) adds nothing
        assert not bus.publish("decisions", "a0", {"again": True})
        r = redis.Redis(port=port)
        keys = [json.loads(f[b"payload"])["decision_id"] for _, f in r.xrange("bqx:decisions")]
        assert keys == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(7)]  # in order
        assert r.xlen("bqx:models") == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_lifecycle_events_reach_the_stream(tmp_path, redis_url):
    """Registered, approved, promoted, rolled back and every rollout step reach the broker
    through the outbox, in order, each once (shared Redis, a stream prefix of this test)."""
    import uuid

    import redis

    from bqx.events import RedisStreamsBus, relay_once

    st = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    st.create_tables()
    # what Registry.log_and_register enqueues (checked in tests/training/test_registry.py)
    st.enqueue_event("models", "registered:bqx-EURUSD:2", {"event": "registered", "version": "2"})
    st.record_promotion("EURUSD", "bqx-EURUSD", action="approve", to_version="2")
    st.record_promotion("EURUSD", "bqx-EURUSD", action="promote", to_version="2", from_version="1")
    st.record_promotion("EURUSD", "bqx-EURUSD", action="rollback", to_version="1", from_version="2")
    ro = st.create_rollout(
        pair="EURUSD",
        kind="canary",
        baseline_version="1",
        candidate_version="2",
        state="canary",
        steps=[0.1, 0.5, 1.0],
        step=0,
        weight=0.1,
        shadow=False,
        dwell_s=0.0,
        shadow_s=0.0,
        actor="test",
        reason="start",
    )
    st.transition_rollout(
        ro["id"], ro["gen"], action="step", reason="healthy", actor="op", step=1, weight=0.5
    )
    prefix = f"bqx-test-{uuid.uuid4().hex[:12]}:"
    bus = RedisStreamsBus(redis_url, prefix=prefix)
    r = redis.Redis.from_url(redis_url)
    try:
        res = relay_once(st, bus)
        assert res["broker_error"] is None and res["pending"] == 0
        got = [json.loads(f[b"payload"]) for _, f in r.xrange(f"{prefix}models")]
        events = [g["event"] for g in got]
        assert events[:4] == ["registered", "approved", "promoted", "rolled_back"]
        steps = [g for g in got if g["event"] == "rollout_step"]
        assert [(g["to_state"], g["to_weight"]) for g in steps][-1] == ("canary", 0.5)
        assert len(steps) == len(st.rollout_events(ro["id"])) >= 2
        assert relay_once(st, bus)["sent"] == 0  # nothing twice
        assert r.xlen(f"{prefix}models") == len(got)
    finally:
        keys = list(r.scan_iter(f"{prefix}*"))
        if keys:
            r.delete(*keys)
