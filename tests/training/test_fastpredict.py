"""The compiled one-row predictor equals pipeline.predict."""

from __future__ import annotations

import numpy as np
import pytest

from bqx import features as F
from bqx.training.fastpredict import FastPredictor
from bqx.training.models import make_estimator, make_pipeline


@pytest.mark.parametrize("model", ["rf", "lightgbm", "lgbm_rf", "xgboost", "ridge"])
def test_fast_path_equals_pipeline(signal_frame, model):
    df = signal_frame.iloc[1500:].dropna(subset=["target"])
    feats = [
        "w60_avg",
        "ema_ratio_100",
        "rsi_14",
        "reg_w240_slope",
        "csi_usd",
        "vol_ratio_60",
        "w15_ret_lag60",
    ]
    X, y = df.drop(columns="target"), df["target"].to_numpy(float)
    X = X.copy()
    X.iloc[::97, X.columns.get_loc("rsi_14")] = np.nan  # missing values take the learned branch
    params = {"n_estimators": 30} if model in ("rf", "lightgbm", "lgbm_rf", "xgboost") else None
    est = make_estimator(model, params, n_jobs=1, n_features=len(feats))
    pipe = make_pipeline(feats, est).fit(X.iloc[:8000], y[:8000])
    fp = FastPredictor(pipe, F.columns())
    Xt = X.iloc[8000:8600]
    ref = pipe.predict(Xt)
    full = Xt[F.columns()].to_numpy(np.float64)
    batch = fp.predict(full)
    ones = np.array([fp.predict_one(full[i]) for i in range(0, len(full), 7)])
    tol = 1e-12 if model in ("rf", "ridge") else 1e-9
    np.testing.assert_allclose(batch, ref, rtol=tol, atol=1e-15)
    np.testing.assert_allclose(ones, ref[::7], rtol=tol, atol=1e-15)
