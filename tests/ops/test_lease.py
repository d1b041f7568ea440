"""The operator lease and the trigger ledger on SQLite and PostgreSQL, and a real
two-process failover after ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from bqx.state import StateDB


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def state(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
        yield s
        s.close()
    else:
        s = StateDB(request.getfixturevalue("pg_url"), prefix=f"t{uuid.uuid4().hex[:10]}_")
        try:
            yield s
        finally:
            s.drop_all()
            s.close()


def test_lease_is_exclusive_and_taken_over_after_expiry(state: StateDB) -> None:
    assert state.try_acquire_lease("op", "a", 0.6) == 1
    assert state.try_acquire_lease("op", "b", 0.6) is None  # a holds it
    assert state.try_acquire_lease("op", "a", 0.6) == 1  # renewal keeps the token
    time.sleep(0.8)
    assert state.try_acquire_lease("op", "b", 5) == 2  # expired: b takes over, new token
    assert state.try_acquire_lease("op", "a", 5) is None  # a cannot come back
    info = state.lease_info("op")
    assert info is not None and info["holder"] == "b" and info["live"]
    assert state.release_lease("op", "b")
    assert state.try_acquire_lease("op", "a", 5) == 3


def test_racing_for_an_expired_lease_has_one_winner(state: StateDB) -> None:
    state.try_acquire_lease("op", "old", 0.01)
    time.sleep(0.05)
    barrier = threading.Barrier(6)
    wins: list[str] = []

    def contend(name: str) -> None:
        barrier.wait()
        if state.try_acquire_lease("op", name, 30) is not None:
            wins.append(name)

    ts = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(wins) == 1


def test_a_trigger_runs_once(state: StateDB) -> None:
    tid, created = state.add_trigger("schedule:EURUSD:2026-11", "EURUSD", "schedule")
    assert created
    assert state.add_trigger("schedule:EURUSD:2026-11", "EURUSD", "schedule") == (tid, False)
    assert state.claim_trigger(tid, "a")
    assert not state.claim_trigger(tid, "b")  # already running
    # a's process dies; b leads and marks the half-done trigger interrupted, never reruns it
    assert state.interrupt_stale_triggers("b") == [tid]
    assert not state.claim_trigger(tid, "b")
    assert not state.finish_trigger(tid, "done", version="9")  # a's late finish is refused
    assert state.get_trigger(tid)["status"] == "interrupted"


# ---------------------------------------------------------------------------------------
# two real operator processes, kill -9
# ---------------------------------------------------------------------------------------
def _operator(env: dict[str, str]) -> subprocess.Popen[str]:
    exe = str(Path(sys.executable).parent / "bqx")
    return subprocess.Popen(
        [exe, "ops", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip


def _holder_pid(state: StateDB) -> int | None:
    info = state.lease_info("operator")
    if info is None or not info["live"]:
        return None
    return int(info["holder"].split(":")[1])


def _wait(cond, timeout: float, poll: float = 0.02):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A state DB of its own: a SQLite file, or a fresh PostgreSQL database (dropped)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    import psycopg

    base = request.getfixturevalue("pg_url")
    name = f"bqx_lease_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_failover_after_kill_9(state_url: str, tmp_path: Path) -> None:
    """The standby waits while the leader lives and takes over within the TTL (+ one tick)
    after the leader is killed with SIGKILL (no chance to release the lease)."""
    ttl, tick = 2.0, 0.25
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(
        BQX_HOME=str(tmp_path / "home"), BQX_STATE_URL=state_url,
        BQX_OPS__LEASE_TTL_S=str(ttl), BQX_OPS__TICK_S=str(tick), BQX_OPS__PAIRS="[]",
        BQX_OPS__RETRAIN_EVERY_DAYS="0", BQX_OPS__MONITOR_EVERY_S="3600",
    )  # fmt: skip
    state = StateDB(state_url)
    a = _operator(env)
    b = None
    try:
        assert _wait(lambda: _holder_pid(state) == a.pid, 60), "first operator never led"
        b = _operator(env)
        time.sleep(ttl + 1.0)  # b is up and polling, but a still leads
        assert _holder_pid(state) == a.pid
        assert b.poll() is None
        os.kill(a.pid, signal.SIGKILL)
        t0 = time.monotonic()
        a.wait(10)
        assert _wait(lambda: _holder_pid(state) == b.pid, ttl + 10), "standby did not take over"
        took = time.monotonic() - t0
        print(json.dumps({"failover_s": round(took, 2), "ttl_s": ttl, "tick_s": tick}))
        assert took <= ttl + tick + 1.0, took
        info = state.lease_info("operator")
        assert info is not None and info["token"] == 2
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        state.close()
