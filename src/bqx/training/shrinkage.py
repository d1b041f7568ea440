"""Shrinkage of a version's point forecast toward "no view", learned out of sample.

Why: on real FX at a 60-bar horizon a fitted model's raw forecasts are mostly noise, and a
model that swings confidently on noise scores far *below* the zero forecast (issue 10: test
R² -0.6 to -0.9 on real EURUSD). The remedy is to learn, on rows the model was not fitted
on (the validation segment, after a purge gap), how much of the forecast to believe:

    y ≈ β · ŷ,      β = Σ y·ŷ / Σ ŷ²   clipped to [0, 1]

the least-squares slope through the origin (the Mincer-Zarnowitz regression without its
intercept). β = 1 keeps a well-calibrated forecast; β = 0 is "no view" (the zero forecast,
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


def fit_shrinkage(y: np.ndarray, yhat: np.ndarray) -> Shrinkage:
    """Least-squares slope of ``y`` on ``yhat`` through the origin, clipped to [0, 1].

    ``y``/``yhat`` must be out of sample for the model (validation rows). With no usable
    rows or a constant-zero forecast, β = 0 (no evidence of skill -> no view)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(yhat, dtype=np.float64)
    m = np.isfinite(y) & np.isfinite(p)
    y, p = y[m], p[m]
    den = float(np.dot(p, p))
    if len(y) == 0 or den <= 0.0:
        return Shrinkage(0.0, 0.0, len(y))
    raw = float(np.dot(y, p)) / den
    return Shrinkage(float(min(1.0, max(0.0, raw))), raw, len(y))
