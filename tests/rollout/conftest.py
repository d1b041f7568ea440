"""A small trained project home for rollout / operator tests.

Bars: a simulated week (Mon-Fri) with a planted signal (regime 1) followed by ~1300 bars
of a random walk from Sunday's open (regime 2, prices continued from regime 1). Horizon 10
bars so outcomes mature fast.
EURUSD: v1 (ridge, trained on regime 1) is production; v2 (ridge, strong shrinkage, also
regime 1) is approved, not promoted. Tests work on a private copy (``loop_home``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bqx.config import Settings

PAIR = "EURUSD"
HORIZON = 10


def loop_settings(home: Path) -> Settings:
    s = Settings(home=home)
    s.horizon = HORIZON
    s.train.approval_rule = "always"
    s.train.model = "ridge"
    s.train.selection_rows = 3000
    s.serve.alias_ttl_s = 0.5
    s.serve.bars_refresh_s = 0.2
    s.serve.rollout_refresh_s = 0.2
    s.serve.rate_limit = 100000.0
    s.ops.pairs = [PAIR]
    s.ops.tick_s = 0.2
    s.ops.monitor_every_s = 0.5
    s.ops.retrain_every_days = 0
    s.ops.retrain_cooldown_h = 1.0
    s.ops.quality_min_samples = 60
    s.ops.gate_min_rows = 100
    s.rollout.shadow_s = 0.0
    s.rollout.dwell_s = 0.0
    s.rollout.min_samples = 30
    s.rollout.shadow_during_canary = True  # the replaying client sends one request per bar
    s.rollout.min_requests = 10
    s.rollout.max_p99_ms = 40.0
    # regime 2 is a random walk: the retrained candidate and v1 are both without skill there,
    # so the paired quality check compares two equal models on ~120 overlapping bars; at the
    # default 0.01 it rolled the candidate back in one full-suite run (p = 0.008). The
    # scenario tests the loop's mechanics; the check itself: tests/rollout/test_paired_quality.py.
    s.rollout.quality_alpha = 0.001
    return s


def regime_bars() -> tuple[pd.DataFrame, pd.Timestamp]:
    """(all bars, first bar of regime 2)."""
    from bqx.data.simulator import generate

    r1 = generate(days=6, pairs=None, seed=5, signal_strength=0.3, start="2024-01-01").bars
    r2 = generate(days=2, pairs=None, seed=11, signal_strength=0.0, start="2024-01-07").bars
    first = pd.Timestamp(r2["ts"].min())
    r2 = r2[r2["ts"] < first + pd.Timedelta(minutes=1300)].copy()  # fits the bar cache
    last1 = r1.sort_values("ts").groupby("pair")["close"].last()
    first2 = r2.sort_values("ts").groupby("pair")["close"].first()
    k = (last1 / first2).reindex(r2["pair"]).to_numpy()
    for c in ("open", "high", "low", "close"):
        r2[c] = r2[c].to_numpy() * k
    return pd.concat([r1, r2], ignore_index=True), pd.Timestamp(r2["ts"].min())


@pytest.fixture(scope="session")
def trained_loop_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from bqx import features as F
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    home = tmp_path_factory.mktemp("loop") / "home"
    s = loop_settings(home)
    s.ensure_home()
    bars, change = regime_bars()
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    reg = Registry(s)
    r1 = bars[bars["ts"] < change]
    df = F.build(r1, PAIR, with_target=True, horizon=HORIZON)
    res = train_frame(PAIR, df, s, model="ridge", selection_rows=3000, n_jobs=1)
    v1 = reg.log_and_register(res)
    reg.promote(PAIR, v1, actor="fixture", reason="test")
    res2 = train_frame(
        PAIR, df, s, model="ridge", params={"alpha": 1e4}, selection_rows=3000, n_jobs=1
    )
    reg.log_and_register(res2)
    return home, change.isoformat()


@pytest.fixture
def loop_home(trained_loop_home: tuple[Path, str], tmp_path: Path) -> Path:
    dst = tmp_path / "loop"
    shutil.copytree(trained_loop_home[0], dst)
    return dst


@pytest.fixture
def regime_change(trained_loop_home: tuple[Path, str]) -> pd.Timestamp:
    return pd.Timestamp(trained_loop_home[1])


@pytest.fixture
def lsettings(loop_home: Path) -> Settings:
    return loop_settings(loop_home)
