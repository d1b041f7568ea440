"""Shrinkage of a version's point forecast toward "no view", learned out of sample.

Why: on real FX at a 60-bar horizon a fitted model's raw forecasts are mostly noise, and a
model that swings confidently on noise scores far *below* the zero forecast (issue 10: test
R² -0.6 to -0.9 on real EURUSD). The remedy is to learn, on rows the model was not fitted
on (the validation segment, after a purge gap), how much of the forecast to believe:

    y ≈ β · ŷ,      β̂ = Σ y·ŷ / Σ ŷ²,   β = clip(β̂ - 1.96·se(β̂), 0, 1)

the lower 97.5 % confidence bound of the least-squares slope through the origin (the
Mincer-Zarnowitz regression without its intercept), se overlap-aware (HAC). β = 1 keeps a well-calibrated forecast; β = 0 is "no view" (the zero forecast,
whose R² on any later period is ≈ 0 minus the squared mean of the target there). An
intercept is *not* fitted: the target (a 60-bar return-like quantity) has mean ≈ 0, and an
offset learned on one validation window is a bet on that window's drift which, measured on
the simulator and the random walk, only adds variance (see docs/honesty.md).

β is stored with the version (:class:`~bqx.training.artifact.ModelArtifact`) and applied
inside its ``predict_frame``/``predict_vector`` so API, batch prediction and backtests all
get the same shrunk forecast. Units: β is dimensionless; the forecast keeps the target's units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Shrinkage:
    """``forecast = beta * raw`` (``raw_beta`` is the unclipped slope, for the record)."""

    beta: float
    raw_beta: float
    n: int

    def apply(self, yhat: np.ndarray) -> np.ndarray:
        return np.asarray(yhat, dtype=np.float64) * self.beta

    def apply_one(self, yhat: float) -> float:
        return yhat * self.beta

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


IDENTITY = Shrinkage(1.0, 1.0, 0)


def fit_shrinkage(
    y: np.ndarray, yhat: np.ndarray, horizon: int | None = None, z: float = 1.96
) -> Shrinkage:
    """Lower confidence bound of the least-squares slope of ``y`` on ``yhat`` through the
    origin, clipped to [0, 1]: ``β = clip(β̂ - z·se(β̂), 0, 1)``.

    ``se`` is overlap-aware (HAC over the ``horizon``-bar overlap, :mod:`bqx.stats`). Why the
    bound and not β̂: with a few hundred effective rows β̂ itself is noisy, and a forecast
    scaled by a noise-fitted β̂ scores below "no view" on the next period (measured: random
    walk test R² -0.027 with β̂ fitted on half the validation segment). Keeping only the part
    of the slope the validation rows show with confidence (one-sided 97.5 % at z = 1.96)
    gives β = 0 on noise almost always and costs a real signal little (a forecast scaled by
    c keeps a share 2c - c² of its R²). ``y``/``yhat`` must be out of sample for the model."""
    from bqx.stats import default_lags, long_run_variance

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(yhat, dtype=np.float64)
    m = np.isfinite(y) & np.isfinite(p)
    y, p = y[m], p[m]
    n = len(y)
    den = float(np.dot(p, p))
    if n < 3 or den <= 0.0:
        return Shrinkage(0.0, 0.0, n)
    raw = float(np.dot(y, p)) / den
    infl = p * (y - raw * p) / (den / n)
    se = float(np.sqrt(long_run_variance(infl, default_lags(n, horizon)) / n))
    beta = raw - z * se if np.isfinite(se) else 0.0
    return Shrinkage(float(min(1.0, max(0.0, beta))), raw, n)
