"""Learning is real and honest (issue 4 "Must show").

* With a predictable component of known strength, the default model (the SPEC random forest
  fitted by LightGBM's random-forest mode, ``lgbm_rf``, since issue 15 item 5) recovers at least 60 % of the oracle's out-of-sample R², and the 90 % conformal interval
  covers 87-93 % of the test targets.
* On a pure random walk, it finds nothing: test R² <= 0.01 and directional accuracy within
  0.5 ± 0.02, on a test segment long enough for that to mean something (the 60-bar target is
  autocorrelated over ~60 bars, so ~75,000 test rows are ~2,000 effective samples: a
  directional accuracy of 0.52 would be ~1.8 standard errors away from a coin).

Sizes come from measurements (docs/performance.md): with ~3 months of M1 data the slow
features have too few effective samples and every model falls short of the oracle; with ~6
months the forest reaches 0.9+ of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.config import Settings
from bqx.data.simulator import generate, oracle_prediction
from bqx.training.metrics import regression_metrics
from bqx.training.splits import chrono_split
from bqx.training.train import prepare, train_frame

pytestmark = pytest.mark.slow


def _frame(days: int, seed: int, strength: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = generate(days=days, pairs="EURUSD", seed=seed, signal_strength=strength).bars
    return bars, F.build(bars, "EURUSD", with_target=True, dtype=np.float32)


STRENGTH = 0.2


@pytest.fixture(scope="module")
def signal_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _frame(170, 7, STRENGTH)


def test_default_model_recovers_most_of_the_oracle_and_intervals_cover(signal_data):
    strength = STRENGTH
    bars, df = signal_data
    s = Settings()
    res = train_frame("EURUSD", df, s)  # default: the SPEC forest in LightGBM's rf mode
    assert res.artifact.model == "lgbm_rf" and res.artifact.params["row_stride"] == 5
    # the oracle's R² on exactly the same test rows
    d = prepare(df)
    sp = chrono_split(len(d), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    oracle = pd.Series(oracle_prediction(bars["close"].to_numpy(), strength), index=bars["ts"])
    test_idx = d.index[sp.test]
    o = regression_metrics(
        d["target"].to_numpy(float)[sp.test], oracle.reindex(test_idx).to_numpy()
    )
    model_r2 = res.metrics["test"]["r2"]
    assert o["r2"] > 0.1  # the component is really there
    assert model_r2 >= 0.6 * o["r2"], f"model R² {model_r2:.4f} vs oracle {o['r2']:.4f}"
    assert model_r2 < o["r2"] + 0.02  # nobody beats the oracle (that would be a leak)
    assert res.approved
    cov = res.metrics["test_coverage"]
    assert 0.87 <= cov <= 0.93, f"coverage {cov:.3f}"


def test_random_walk_gives_nothing():
    _, df = _frame(150, 11, 0.0)
    s = Settings()
    s.train.train_frac, s.train.val_frac = 0.4, 0.1  # a long test segment
    res = train_frame("EURUSD", df, s)
    t = res.metrics["test"]
    assert t["n"] > 70_000
    assert -0.01 <= t["r2"] <= 0.01, t  # the shrinkage keeps "no view" from going negative
    if res.artifact.shrinkage.beta > 0:  # shrinkage keeps the sign
        assert abs(t["da"] - 0.5) <= 0.02, t
    else:  # "no view": every forecast is 0, which has no direction
        assert t["da"] == 0.0, t
    assert not res.approved


def test_subsampled_selection_keeps_the_features_of_all_rows(signal_data):
    """The fast selection (30,000-row subsample) picks nearly the same set as all rows."""
    from bqx.training.selection import select_features

    _, df = signal_data
    d = prepare(df)
    s = Settings()
    sp = chrono_split(len(d), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    X = d.drop(columns=["target"]).iloc[sp.train]
    y = d["target"].to_numpy(float)[sp.train]
    assert len(X) > 80_000
    fast = select_features(X, y, rows=30_000, n_jobs=2)
    full = select_features(X, y, rows=None, n_jobs=2)
    a, b = set(fast.features), set(full.features)
    jaccard = len(a & b) / len(a | b)
    assert jaccard >= 0.8, f"Jaccard {jaccard:.3f}"
    assert fast.seconds < full.seconds
