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
