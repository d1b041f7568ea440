"""The model zoo. Every artifact is one sklearn Pipeline: column selection -> StandardScaler ->
estimator, so the same object serves batch prediction, and a compiled copy serves one row
(:mod:`bqx.training.fastpredict`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bqx.training import MODELS

#: SPEC section 4: the default per-pair model.
RF_SPEC: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 10,
    "min_samples_split": 20,
    "min_samples_leaf": 10,
    "max_features": "sqrt",
    "random_state": 42,
}
# FX targets are mostly noise (R² of a good model is a few percent): the boosting and ridge
# defaults are strongly regularised. Measured on simulator data with a known oracle (6 months
# of M1, oracle R² 0.12-0.23): these reach ~95% of the oracle, while the libraries' own
# defaults (31 leaves, 300 trees, lr 0.05 / alpha 1) overfit to ~5% or less. See
# docs/performance.md and tests/training/test_learning.py.
LGBM_DEFAULT: dict[str, Any] = {
    "n_estimators": 200,
    "num_leaves": 7,
    "learning_rate": 0.02,
    "min_child_samples": 500,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "random_state": 42,
    "verbose": -1,
}
XGB_DEFAULT: dict[str, Any] = {
    "n_estimators": 200,
    "max_depth": 3,
    "learning_rate": 0.02,
    "min_child_weight": 500.0,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "tree_method": "hist",
    "random_state": 42,
}
#: with standardised features, alpha is comparable to the number of rows (~1e5 per pair)
RIDGE_DEFAULT: dict[str, Any] = {"alpha": 1e4}


class ColumnSelector(BaseEstimator, TransformerMixin):
    """Select named columns from a DataFrame (or positions from an array of all candidates)."""

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> ColumnSelector:
        self.columns_ = list(self.columns)
        return self

    def transform(self, X: Any) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.columns_ if c not in X.columns]
            if missing:
                raise ValueError(f"input lacks selected feature columns: {missing[:5]}")
            return X[self.columns_].to_numpy(dtype=np.float64)
        return np.asarray(X, dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.columns_, dtype=object)


def default_params(model: str) -> dict[str, Any]:
    return {
        "rf": RF_SPEC,
        "lightgbm": LGBM_DEFAULT,
        "xgboost": XGB_DEFAULT,
        "ridge": RIDGE_DEFAULT,
    }[model].copy()


def make_estimator(model: str, params: dict[str, Any] | None = None, n_jobs: int = 1) -> Any:
    """An unfitted estimator of kind ``model`` with defaults overridden by ``params``."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    p = default_params(model)
    p.update(params or {})
    if model == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_jobs=n_jobs, **p)
    if model == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_jobs=n_jobs, **p)
    if model == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(n_jobs=n_jobs, **p)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("ridge", Ridge(**p)),
        ]
    )


def make_pipeline(features: Sequence[str], estimator: Any) -> Pipeline:
    return Pipeline(
        [
            ("select", ColumnSelector(list(features))),
            ("scale", StandardScaler()),
            ("model", estimator),
        ]
    )
