"""A small trained home for online-learning tests: six simulated days (all pairs, a planted
signal), horizon 10; EURUSD v1 (ridge, trained on the first ~3 days) is production."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bqx.config import Settings

PAIR = "EURUSD"
HORIZON = 10


def online_settings(home: Path) -> Settings:
    s = Settings(home=home)
    s.horizon = HORIZON
    s.train.approval_rule = "always"
    s.train.model = "ridge"
    s.train.selection_rows = 1000
    s.ops.pairs = [PAIR]
    s.ops.gate_min_rows = 100
    s.ops.retrain_every_days = 0
    s.online.window_bars = 2000
    s.online.calibration_bars = 600
    s.online.check_bars = 1200
    s.online.half_life_bars = 1000
    s.rollout.shadow_s = 3600.0
    return s


@pytest.fixture(scope="session")
def trained_online_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    home = tmp_path_factory.mktemp("online") / "home"
    s = online_settings(home)
    s.ensure_home()
    bars = generate(days=6, pairs=None, seed=5, signal_strength=0.3, start="2024-01-01").bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    first = bars[bars["ts"] < bars["ts"].min() + (bars["ts"].max() - bars["ts"].min()) / 2]
    df = F.build(first, PAIR, with_target=True, horizon=HORIZON)
    res = train_frame(PAIR, df, s, model="ridge", selection_rows=1000, n_jobs=1)
    reg = Registry(s)
    v1 = reg.log_and_register(res)
    reg.promote(PAIR, v1, actor="fixture", reason="test")
    return home


@pytest.fixture
def osettings(trained_online_home: Path, tmp_path: Path) -> Settings:
    dst = tmp_path / "home"
    shutil.copytree(trained_online_home, dst)
    return online_settings(dst)


@pytest.fixture
def op(osettings: Settings):  # type: ignore[no-untyped-def]
    from bqx.ops.operator import Operator

    o = Operator(osettings)
    assert o.acquire()
    return o
