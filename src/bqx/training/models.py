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
#: The SPEC forest fitted by LightGBM's random-forest mode (issue 15 item 5): the same model
#: class (bagged, unpruned-to-depth regression trees averaged, not boosted), mapped from
#: :data:`RF_SPEC`: 100 trees; depth 10 (num_leaves 2^10, so depth is the binding bound as in
#: scikit-learn, which has no leaf cap); min_samples_leaf 10 -> min_child_samples 10 (which
#: also implies min_samples_split 20: a split needs 10 rows on each side); max_features
#: 'sqrt' -> feature_fraction_bynode = 1/sqrt(p) per split, set from the number p of
#: selected features at fit time (:func:`make_estimator`); the bootstrap -> bagging 63.2 %
#: of the rows per tree without replacement (a bootstrap sample's share of distinct rows,
#: 1 - 1/e). The differences: split search on 63-bin histograms instead of exact
#: thresholds, bagging without replacement, and ``row_stride``: the forest is fitted on every
#: 5th row of the training segment (the 60-bar targets of neighbouring rows overlap by 59
#: bars, so the thinned rows carry nearly the same information; the fit costs ~5x less and
#: the deep trees overfit less). Quality vs the SPEC RF: docs/performance.md ("Walk-forward
#: at full size", issue 15 item 5).
LGBM_RF: dict[str, Any] = {
    "boosting_type": "rf",
    "n_estimators": 100,
    "max_depth": 10,
    "num_leaves": 1024,
    "min_child_samples": 10,
    "min_child_weight": 0.0,
    "min_split_gain": 0.0,
    "reg_lambda": 0.0,
    "subsample": 0.632,
    "subsample_freq": 1,
    "feature_fraction_bynode": "sqrt",
    "max_bin": 63,
    "row_stride": 5,
    "random_state": 42,
    "verbose": -1,
}
#: Parameters that say how the rows are fed to the estimator, not estimator options: applied
#: by :func:`fit_pipeline`, recorded with the version's parameters, never passed to the
#: library. ``row_stride`` k: fit on every k-th training row (the last one included).
FIT_OPTIONS = ("row_stride",)
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
        "lgbm_rf": LGBM_RF,
        "xgboost": XGB_DEFAULT,
        "ridge": RIDGE_DEFAULT,
    }[model].copy()


def resolve_params(model: str, params: dict[str, Any], n_features: int) -> dict[str, Any]:
    """``params`` with data-dependent values made concrete for ``n_features`` inputs (the
    stored version records the value it was fitted with): LightGBM-rf's ``'sqrt'`` feature
    fraction per split becomes 1/sqrt(p), scikit-learn's ``max_features='sqrt'``."""
    p = dict(params)
    if model == "lgbm_rf" and p.get("feature_fraction_bynode") == "sqrt" and n_features > 0:
        n = int(n_features)
        p["feature_fraction_bynode"] = min(1.0, max(1, int(np.sqrt(n))) / n)
    return p


def make_estimator(
    model: str, params: dict[str, Any] | None = None, n_jobs: int = 1, n_features: int = 0
) -> Any:
    """An unfitted estimator of kind ``model`` with defaults overridden by ``params``
    (``n_features``: the number of inputs, for parameters given relative to it)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    p = default_params(model)
    p.update(params or {})
    p = resolve_params(model, p, n_features)
    for k in FIT_OPTIONS:
        p.pop(k, None)
    if model == "lgbm_rf":
        from lightgbm import LGBMRegressor

        if p.get("feature_fraction_bynode") == "sqrt":
            raise ValueError("lgbm_rf needs n_features to resolve feature_fraction_bynode='sqrt'")
        return LGBMRegressor(n_jobs=n_jobs, **p)
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


def fit_pipeline(pipe: Pipeline, X: Any, y: Any, params: dict[str, Any] | None) -> Pipeline:
    """Fit ``pipe`` on ``X``/``y`` as ``params``' :data:`FIT_OPTIONS` say: with
    ``row_stride`` k > 1, on every k-th row counted back from the last (the most recent row,
    the one nearest the calibration segment, is always used)."""
    k = int((params or {}).get("row_stride", 1) or 1)
    if k > 1:
        start = (len(y) - 1) % k
        X = X.iloc[start::k] if hasattr(X, "iloc") else X[start::k]
        y = np.asarray(y)[start::k]
    return pipe.fit(X, y)


def make_pipeline(features: Sequence[str], estimator: Any) -> Pipeline:
    return Pipeline(
        [
            ("select", ColumnSelector(list(features))),
            ("scale", StandardScaler()),
            ("model", estimator),
        ]
    )
