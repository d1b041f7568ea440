"""The incremental update of one fitted pipeline on recent rows (no registry, no I/O).

* ridge: the ridge problem re-centred on the parent, with exponentially decaying row
  weights — the batch form of recursive least squares with a forgetting factor::

      b = argmin Σ_i w_i (y_i - z_i·b)² + α ‖b - b_parent‖²
        = (Zᵀ W Z + α I)⁻¹ (Zᵀ W y + α b_parent)

  ``z`` is the parent's own transform of the row (selection, scaler, imputer: frozen, so
  the coefficients keep their meaning) with a 1 for the intercept; α defaults to the
  parent's ``alpha``.
* LightGBM, ``boost``: ``online.lgbm_rounds`` more trees fitted on the window on top of
  the parent's (LightGBM ``init_model``), with the parent's parameters and the row weights;
  ``refit``: the parent's trees kept, their leaf values re-estimated on the window and
  blended, ``new = decay·old + (1 - decay)·refitted`` (``Booster.refit``).
* random forest and XGBoost: no incremental update here (:class:`OnlineUnsupported`): a
  forest cannot be updated without regrowing it. Their pairs stay on the operator's
  scheduled retrain (``ops.retrain_every_days``, a full refit on the latest window).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from bqx.errors import BqxError

SUPPORTED = ("ridge", "lightgbm")


class OnlineUnsupported(BqxError):
    """The model kind has no online update."""


def decay_weights(n: int, half_life: float) -> np.ndarray:
    """Row weights ``0.5 ** (age / half_life)`` (newest row 1), mean-normalised."""
    if half_life <= 0 or n == 0:
        return np.ones(n)
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    w = 0.5 ** (age / half_life)
    return w / w.mean()


def update_pipeline(
    model: str, pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, settings: Any
) -> tuple[Pipeline, dict[str, Any]]:
    """A new pipeline updated on (``X``, ``y``) (time-ordered, finite ``y``); the parent
    is not modified. Returns (pipeline, what was done)."""
    o = settings.online
    y = np.asarray(y, dtype=np.float64)
    w = decay_weights(len(y), o.half_life_bars)
    new = copy.deepcopy(pipeline)
    Z = new[:-1].transform(X)  # the parent's selection + scaler, frozen
    est = new.named_steps["model"]
    if model == "ridge":
        imp = est.named_steps["impute"]
        ridge = est.named_steps["ridge"]
        Zi = imp.transform(Z)
        alpha = float(o.ridge_alpha if o.ridge_alpha is not None else ridge.alpha)
        b0 = np.append(np.asarray(ridge.coef_, dtype=np.float64), float(ridge.intercept_))
        A = np.column_stack([Zi, np.ones(len(Zi))])
        lhs = A.T @ (A * w[:, None]) + alpha * np.eye(A.shape[1])
        rhs = A.T @ (w * y) + alpha * b0
        b = np.linalg.solve(lhs, rhs)
        ridge.coef_ = b[:-1]
        ridge.intercept_ = float(b[-1])
        step = float(np.linalg.norm(b - b0)) / max(float(np.linalg.norm(b0)), 1e-300)
        return new, {"method": "ridge_rls", "alpha": alpha, "rows": len(y), "rel_step": step}
    if model == "lightgbm":
        parent = pipeline.named_steps["model"]
        if o.lgbm_method == "refit":
            booster = parent.booster_.refit(Z, y, decay_rate=o.lgbm_decay, weight=w)
            est._Booster = booster
            return new, {"method": "lgbm_refit", "decay": o.lgbm_decay, "rows": len(y)}
        from lightgbm import LGBMRegressor

        params = {**parent.get_params(), "n_estimators": int(o.lgbm_rounds), "n_jobs": 1}
        cont = LGBMRegressor(**params)
        cont.fit(Z, y, sample_weight=w, init_model=parent.booster_)
        new.steps[-1] = ("model", cont)
        return new, {
            "method": "lgbm_boost",
            "rounds": int(o.lgbm_rounds),
            "trees": int(cont.booster_.num_trees()),
            "rows": len(y),
        }
    raise OnlineUnsupported(
        f"no online update for model kind {model!r} (supported: {', '.join(SUPPORTED)})",
        hint="the operator's scheduled retrain (ops.retrain_every_days) refits such pairs "
        "on the latest window; disable online learning for them with `bqx online disable`",
    )
