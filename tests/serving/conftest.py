"""Fixtures of the prediction-service tests: one trained project home per session.

The session home holds 6 simulated days of all 28 pairs in DuckDB and ridge models
(version 1, production) for EURUSD, USDJPY and GBPUSD, plus an approved but not promoted
version 2 of EURUSD (for live promotion). Tests that change anything work on a copy
(:func:`home`), so they cannot see each other's promotions or decisions.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bqx.config import Settings

PAIRS_TRAINED = ("EURUSD", "USDJPY", "GBPUSD")


def make_settings(home: Path, **serve: object) -> Settings:
    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.serve.alias_ttl_s = 0.5
    s.serve.bars_refresh_s = 0.2
    for k, v in serve.items():
        setattr(s.serve, k, v)
    return s


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    home = tmp_path_factory.mktemp("serving") / "home"
    s = make_settings(home)
    s.ensure_home()
    bars = generate(days=6, pairs=None, seed=5, signal_strength=0.2).bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    reg = Registry(s)
    for pair in PAIRS_TRAINED:
        df = F.build(bars, pair, with_target=True)
        r = train_frame(pair, df, s, model="ridge", selection_rows=3000, n_jobs=1)
        v = reg.log_and_register(r)
        reg.promote(pair, v, actor="fixture", reason="test")
    df = F.build(bars, "EURUSD", with_target=True)
    r2 = train_frame(
        "EURUSD", df, s, model="ridge", params={"alpha": 1e4}, selection_rows=3000, n_jobs=1
    )
    reg.log_and_register(r2)  # version 2: approved ("always"), not promoted
    return home


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    """A private copy of the trained home (artifacts stay where MLflow recorded them)."""
    dst = tmp_path / "served"
    shutil.copytree(trained_home, dst)
    return dst


@pytest.fixture
def settings(home: Path) -> Settings:
    return make_settings(home)


def create_key(settings: Settings, role: str, rate: float | None = None) -> str:
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    return ApiKeys(open_state(settings)).create_key(role, rate=rate)[1]


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    return {r: create_key(settings, r) for r in ("reader", "trader", "admin")}


@pytest.fixture
def client(settings: Settings):
    from bqx.serving.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def hdr(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**bqx: str) -> dict[str, str]:
    """This process's environment without BQX_* settings, plus ``bqx`` (already BQX_ names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(bqx)
    return env


def run_bqx(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run the installed ``bqx`` console script; its stdout (fails the test on rc != 0)."""
    exe = str(Path(sys.executable).parent / "bqx")
    r = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


@contextmanager
def bqx_server(env: dict[str, str], *args: str, start_timeout: float = 90) -> Iterator[str]:
    """A real ``bqx serve`` on 127.0.0.1 (a free port); yields its base URL once /healthz
    answers, and terminates it (graceful shutdown) afterwards."""
    port = free_port()
    exe = str(Path(sys.executable).parent / "bqx")
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
