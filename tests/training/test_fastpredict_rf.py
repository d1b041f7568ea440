"""The random forest's compiled one-row walk gives the former numpy walk's values bit for
bit (the served RF forecasts do not move), and stays within sklearn's rounding."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from bqx.training.fastpredict import _Forest


def _numpy_walk(f: _Forest, X: np.ndarray) -> np.ndarray:
    """The walk as it was before the kernel (all trees at once in numpy)."""
    X = np.asarray(X, dtype=np.float32).astype(np.float64)
    out = np.empty(len(X))
    for i in range(len(X)):
        x = X[i]
        node = f.roots
        for _ in range(f.depth):
            v = x[f.feature[node]]
            go_left = np.where(np.isnan(v), f.missing_left[node], v <= f.threshold[node])
            node = np.where(go_left, f.left[node], f.right[node])
        out[i] = f.value[node].mean()
    return out


def test_compiled_walk_equals_numpy_walk_bit_for_bit():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 9))
    X[rng.random(X.shape) < 0.05] = np.nan  # NaNs take the learned branch
    y = np.nansum(X[:, :3], axis=1) + 0.1 * rng.standard_normal(3000)
    rf = RandomForestRegressor(n_estimators=37, max_depth=9, min_samples_leaf=3,
                               random_state=0, n_jobs=1).fit(X[:2000], y[:2000])  # fmt: skip
    f = _Forest(rf)
    Xt = X[2000:]
    Xt[5, :] = f.threshold[f.roots[0]]  # a value on a split threshold goes left
    got = f(Xt)
    np.testing.assert_array_equal(got, _numpy_walk(f, Xt))
    np.testing.assert_allclose(got, rf.predict(Xt), rtol=1e-12, atol=1e-15)
    # one row at a time (the serving path) is the same as the batch
    np.testing.assert_array_equal(np.array([f(Xt[i : i + 1])[0] for i in range(50)]), got[:50])
