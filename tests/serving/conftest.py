"""Fixtures of the prediction-service tests: one trained project home per session.

The session home holds 6 simulated days of all 28 pairs in DuckDB and ridge models
(version 1, production) for EURUSD, USDJPY and GBPUSD, plus an approved but not promoted
version 2 of EURUSD (for live promotion). Tests that change anything work on a copy
(:func:`home`), so they cannot see each other's promotions or decisions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
