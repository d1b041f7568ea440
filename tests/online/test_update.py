"""The update step alone: ridge RLS is re-centred on the parent (α → ∞ keeps it, α → 0
fits the window), LightGBM boost adds trees / refit keeps them, RF is refused clearly;
the parent is never modified."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.config import Settings
from bqx.training.models import make_estimator, make_pipeline

COLS = ["a", "b", "c"]


def _data(n: int, coef: list[float], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=COLS)
    return X, X.to_numpy() @ np.array(coef) + 0.1 * rng.normal(size=n)


def test_ridge_rls_between_parent_and_window() -> None:
    from bqx.online.update import update_pipeline

    X, y = _data(3000, [1.0, 0.0, 0.0], 0)
    parent = make_pipeline(COLS, make_estimator("ridge", {"alpha": 1.0})).fit(X, y)
    before = parent[-1].named_steps["ridge"].coef_.copy()
    Xn, yn = _data(3000, [-1.0, 0.5, 0.0], 1)  # the relationship changed
    s = Settings()
    s.online.half_life_bars = 0
    s.online.ridge_alpha = 1e12
    kept, _ = update_pipeline("ridge", parent, Xn, yn, s)
    s.online.ridge_alpha = 1e-6
    moved, info = update_pipeline("ridge", parent, Xn, yn, s)
    assert np.allclose(kept.predict(Xn), parent.predict(Xn), atol=1e-5)
    assert np.corrcoef(moved.predict(Xn), yn)[0, 1] > 0.99 and info["method"] == "ridge_rls"
    assert np.array_equal(parent[-1].named_steps["ridge"].coef_, before)  # parent untouched


def test_lightgbm_boost_and_refit_and_rf_refused() -> None:
    from bqx.online.update import OnlineUnsupported, update_pipeline

    X, y = _data(2000, [1.0, 0.0, 0.0], 0)
    p = {"n_estimators": 30, "min_child_samples": 20, "verbose": -1}
    parent = make_pipeline(COLS, make_estimator("lightgbm", p)).fit(X, y)
    n0 = parent[-1].booster_.num_trees()
    Xn, yn = _data(2000, [-1.0, 0.0, 0.0], 1)
    s = Settings()
    s.online.lgbm_method = "boost"
    s.online.lgbm_rounds = 7
    boosted, info = update_pipeline("lightgbm", parent, Xn, yn, s)
    assert info["trees"] == n0 + 7 and parent[-1].booster_.num_trees() == n0
    s.online.lgbm_method = "refit"
    s.online.lgbm_decay = 0.0
    refit, _ = update_pipeline("lightgbm", parent, Xn, yn, s)
    assert refit[-1].booster_.num_trees() == n0
    mse = {k: float(np.mean((yn - m.predict(Xn)) ** 2)) for k, m in
           (("parent", parent), ("boost", boosted), ("refit", refit))}  # fmt: skip
    assert mse["boost"] < mse["parent"] and mse["refit"] < mse["parent"], mse
    rf = make_pipeline(COLS, make_estimator("rf", {"n_estimators": 5})).fit(X, y)
    with pytest.raises(OnlineUnsupported, match="no online update for model kind 'rf'"):
        update_pipeline("rf", rf, Xn, yn, s)
