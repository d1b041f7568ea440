"""LightGBM's single-row fast path gives exactly what Booster.predict gives."""

from __future__ import annotations

import pickle
import threading

import lightgbm as lgb
import numpy as np
import pytest

from bqx.training.fastpredict import _LgbBooster


def _data(n: int = 1500, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, k))
    y = X[:, 0] * 0.5 - X[:, 3] ** 2 * 0.1 + rng.normal(scale=0.3, size=n)
    X[rng.random(size=X.shape) < 0.05] = np.nan  # missing values take the learned branch
    return X, y


@pytest.mark.parametrize("early_stop", [False, True])
def test_single_row_equals_booster_predict(early_stop: bool) -> None:
    X, y = _data()
    m = lgb.LGBMRegressor(n_estimators=80, num_leaves=15, verbose=-1, n_jobs=1)
    if early_stop:  # a best iteration below the last: Booster.predict uses it
        m.fit(X[:1000], y[:1000], eval_set=[(X[1000:1200], y[1000:1200])],
              callbacks=[lgb.early_stopping(3, verbose=False)])  # fmt: skip
        assert 0 < m.booster_.best_iteration < 80
    else:
        m.fit(X[:1000], y[:1000])
    b = m.booster_
    fast = _LgbBooster(b)
    Xt = X[1200:]
    ref = b.predict(Xt, num_threads=1)
    one = np.array([fast(Xt[i : i + 1])[0] for i in range(len(Xt))])
    assert one.tobytes() == ref.tobytes()  # bit for bit
    assert fast(Xt).tobytes() == ref.tobytes()  # several rows: Booster.predict itself
    with pytest.raises(Exception, match="number of features"):  # never a read past the row
        fast(Xt[:1, :-1])
    # a copy (an artifact pickled to a worker) builds its own fast config
    again = pickle.loads(pickle.dumps(fast))
    assert again(Xt[:1])[0] == ref[0]


def test_single_row_from_threads() -> None:
    X, y = _data()
    b = lgb.LGBMRegressor(n_estimators=40, verbose=-1, n_jobs=1).fit(X, y).booster_
    fast = _LgbBooster(b)
    ref = b.predict(X, num_threads=1)
    got = np.full(len(X), np.nan)

    def run(lo: int) -> None:
        for i in range(lo, len(X), 4):
            got[i] = fast(X[i : i + 1])[0]

    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got.tobytes() == ref.tobytes()
