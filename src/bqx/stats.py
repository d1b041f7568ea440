"""Uncertainty of out-of-sample figures on overlapping targets: one shared implementation.

Why this module exists: BQX forecasts ``y(t) = bqx_60(t+60)`` at every bar, so consecutive
targets share 59 of their 60 future bars and consecutive errors are strongly correlated
(an MA(h-1) process at least; more with volatility clustering). A day of 1,440 minute
forecasts holds only ~100 independent observations. Treating the rows as independent makes
every standard error ~4x too small and every "significant" alert, approval or A/B verdict
misfire (see shared/STATISTICS-NOTES.md). Every metric BQX reports - training R², MAE, RMSE,
directional accuracy, interval coverage, backtest Sharpe, live quality, A/B and rollout
comparisons - takes its uncertainty from here.

The estimator: a heteroskedasticity-and-autocorrelation-consistent (HAC, Newey-West)
long-run variance with Bartlett weights, applied to each metric's *influence values* (the
per-row terms whose mean is the metric, linearised by the delta method for ratios like R²
and square roots like RMSE). From it:

* standard error of the metric: ``sqrt(LRV / n)``;
* effective sample size: ``n_eff = n * var(z) / LRV(z)`` - how many independent rows the
  sample is worth for that metric (clipped to ``[1, n]``);
* a two-sided normal interval at ``level``.

Lag window: for ``horizon`` h the overlap alone makes errors MA(h-1), whose autocorrelations
fall linearly to zero at lag h. Bartlett weights with a window of exactly h-1 would
under-count that by a third, so the default window is ``2 h`` (captures ~85 % of the
long-run variance of a pure MA(h-1); more would cost variance), and never less than the
Newey-West rule ``4 (n/100)^(2/9)``. It is capped at ``n // 4``.

Why hand-written rather than ``statsmodels``: the project does not depend on statsmodels, the
estimator is twenty lines with an FFT, and it is called inside monitoring passes over 28 pairs
where statsmodels' per-call overhead would dominate. A moving-block bootstrap is provided too
(:func:`block_bootstrap`) for statistics without a convenient linearisation; tests check that
both agree with the known variance of simulated AR and MA processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special as _sc  # ufuncs: scipy.stats costs ~1-2 s of import

__all__ = [
    "Comparison",
    "Estimate",
    "autocorrelations",
    "block_bootstrap",
    "default_lags",
    "diebold_mariano",
    "effective_sample_size",
    "fmt_pm",
    "long_run_variance",
    "mean_estimate",
    "metric_estimates",
    "skill_vs_baseline",
]


# ---------------------------------------------------------------------------------------
# value object
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A figure with its uncertainty: ``value`` in ``[lo, hi]`` at ``level``.

    ``n`` rows were used; they are worth ``n_eff`` independent ones for this figure.
    ``se`` is the overlap-aware standard error. NaN everywhere when there were too few rows.
    """

    value: float
    lo: float
    hi: float
    se: float
    n: int
    n_eff: float
    level: float = 0.95
    method: str = "hac"

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.se)

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": _f(self.value),
            "lo": _f(self.lo),
            "hi": _f(self.hi),
            "se": _f(self.se),
            "n": int(self.n),
            "n_eff": _f(self.n_eff),
            "level": self.level,
            "method": self.method,
        }

    def fmt(self, sig: int = 2) -> str:
        """``0.012 ± 0.030`` (half-width of the interval, ``sig`` significant digits)."""
        return fmt_pm(self.value, self.half_width, sig=sig)

    def __str__(self) -> str:
        return self.fmt()

    @classmethod
    def nan(cls, n: int = 0, level: float = 0.95, method: str = "hac") -> Estimate:
        x = float("nan")
        return cls(x, x, x, x, n, x, level, method)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        def g(k: str) -> float:
            v = d.get(k)
            return float("nan") if v is None else float(v)

        return cls(
            g("value"),
            g("lo"),
            g("hi"),
            g("se"),
            int(d.get("n") or 0),
            g("n_eff"),
            float(d.get("level") or 0.95),
            str(d.get("method") or "hac"),
        )


def _f(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def fmt_pm(value: float, half: float, sig: int = 2) -> str:
    """Format ``value ± half`` with ``half`` to ``sig`` significant digits and ``value`` to
    the same decimal place: ``fmt_pm(0.01234, 0.0301) == '0.012 ± 0.030'``."""
    if not math.isfinite(value):
        return "n/a"
    if not math.isfinite(half) or half <= 0:
        return f"{value:.{sig + 1}g}"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(half))))
    return f"{value:.{decimals}f} ± {half:.{decimals}f}"


# ---------------------------------------------------------------------------------------
# long-run variance and effective sample size
# ---------------------------------------------------------------------------------------
def default_lags(n: int, horizon: int | None = None) -> int:
    """Bartlett window for ``n`` rows whose targets overlap over ``horizon`` bars (see the
    module docstring): ``max(2 h, 4 (n/100)^(2/9))``, capped at ``n // 4``."""
    nw = math.floor(4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0))
    lags = max(nw, 2 * int(horizon or 0))
    return int(max(0, min(lags, n // 4)))


def autocorrelations(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocovariances ``gamma_0..gamma_max_lag`` of ``x`` (demeaned, divided by n;
    the biased estimator, which keeps the Bartlett sum non-negative). FFT: O(n log n)."""
    x = np.asarray(x, float)
    n = len(x)
    if n == 0:
        return np.zeros(max_lag + 1)
    d = x - x.mean()
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(d, size)
    ac = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1] / n
    out = np.zeros(max_lag + 1)
    out[: len(ac)] = ac
    return out


def long_run_variance(x: np.ndarray, lags: int) -> float:
    """Newey-West (Bartlett) long-run variance of ``x``: ``gamma_0 + 2 sum_k w_k gamma_k``
    with ``w_k = 1 - k/(lags+1)``. Equals ``n * Var(mean(x))`` asymptotically."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return float("nan")
    lags = int(min(max(lags, 0), len(x) - 1))
    g = autocorrelations(x, lags)
    if lags == 0:
        return float(g[0])
    w = 1.0 - np.arange(1, lags + 1) / (lags + 1.0)
    return float(max(g[0] + 2.0 * np.dot(w, g[1:]), 0.0))


def effective_sample_size(
    x: np.ndarray, lags: int | None = None, horizon: int | None = None
) -> float:
    """How many independent rows ``x`` is worth for estimating its mean:
    ``n * gamma_0 / LRV`` in ``[1, n]``. For an AR(1) with coefficient phi this tends to
    ``n (1 - phi) / (1 + phi)``; for a sum over h overlapping steps to ``n / h``-ish."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return float(n)
    lags = default_lags(n, horizon) if lags is None else lags
    g0 = float(np.var(x))
    lrv = long_run_variance(x, lags)
    if not (g0 > 0 and lrv > 0):
        return float(n)
    return float(min(max(n * g0 / lrv, 1.0), n))


def _z(level: float) -> float:
    return float(_sc.ndtri(0.5 + level / 2.0))  # = scipy.stats.norm.ppf


def _from_influence(
    value: float, z: np.ndarray, *, horizon: int | None, level: float, lags: int | None
) -> Estimate:
    """Estimate for a statistic whose influence values (per-row linearisation) are ``z``."""
    n = len(z)
    if n < 3 or not math.isfinite(value):
        return Estimate.nan(n, level)
    lags = default_lags(n, horizon) if lags is None else lags
    lrv = long_run_variance(z, lags)
    g0 = float(np.var(z))
    se = math.sqrt(lrv / n) if lrv > 0 else 0.0
    n_eff = float(min(max(n * g0 / lrv, 1.0), n)) if lrv > 0 and g0 > 0 else float(n)
    q = _z(level)
    return Estimate(value, value - q * se, value + q * se, se, n, n_eff, level, "hac")


def mean_estimate(
    x: np.ndarray, horizon: int | None = None, level: float = 0.95, lags: int | None = None
) -> Estimate:
    """Mean of ``x`` (finite values) with an overlap-aware interval."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Estimate.nan(0, level)
    return _from_influence(float(x.mean()), x, horizon=horizon, level=level, lags=lags)


# ---------------------------------------------------------------------------------------
# forecast metrics
# ---------------------------------------------------------------------------------------
def _clean(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, float)
    yhat = np.asarray(yhat, float)
    m = np.isfinite(y) & np.isfinite(yhat)
    return y[m], yhat[m]


def r2_estimate(
    y: np.ndarray, yhat: np.ndarray, horizon: int | None = None, level: float = 0.95
) -> Estimate:
    """Out-of-sample R² ``1 - mean(e²)/mean((y-ȳ)²)`` with a delta-method HAC interval."""
    y, yhat = _clean(y, yhat)
    if len(y) < 3:
        return Estimate.nan(len(y), level)
    e2 = (y - yhat) ** 2
    d = (y - y.mean()) ** 2
    a, b = float(e2.mean()), float(d.mean())
    if b <= 0:
        return Estimate.nan(len(y), level)
    z = -(e2 - a) / b + a * (d - b) / b**2
    return _from_influence(1.0 - a / b, z, horizon=horizon, level=level, lags=None)


def metric_estimates(
    y: np.ndarray,
    yhat: np.ndarray,
    horizon: int | None = None,
    level: float = 0.95,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """R², MAE, RMSE, directional accuracy (rows with y != 0; a forecast of 0 counts as
    wrong, as :func:`bqx.training.metrics.directional_accuracy`) and, when interval bounds
    ``lo``/``hi`` are given, coverage - each an :class:`Estimate`."""
    y0 = np.asarray(y, float)
    p0 = np.asarray(yhat, float)
    m = np.isfinite(y0) & np.isfinite(p0)
    y, p = y0[m], p0[m]
    out: dict[str, Estimate] = {"r2": r2_estimate(y, p, horizon, level)}
    e = y - p
    out["mae"] = mean_estimate(np.abs(e), horizon, level)
    mse = mean_estimate(e**2, horizon, level)
    if mse.finite and mse.value > 0:
        rmse = math.sqrt(mse.value)
        se = mse.se / (2.0 * rmse)
        q = _z(level)
        out["rmse"] = Estimate(rmse, rmse - q * se, rmse + q * se, se, mse.n, mse.n_eff, level)
    else:
        out["rmse"] = Estimate.nan(len(y), level)
    nz = y != 0
    hits = (np.sign(p[nz]) == np.sign(y[nz])).astype(float)
    out["da"] = mean_estimate(hits, horizon, level)
    if lo is not None and hi is not None:
        lo_, hi_ = np.asarray(lo, float)[m], np.asarray(hi, float)[m]
        ok = np.isfinite(lo_) & np.isfinite(hi_)
        cov = ((y[ok] >= lo_[ok]) & (y[ok] <= hi_[ok])).astype(float)
        out["coverage"] = mean_estimate(cov, horizon, level)
    return out


def skill_vs_baseline(
    y: np.ndarray,
    yhat: np.ndarray,
    ybase: np.ndarray,
    horizon: int | None = None,
    level: float = 0.95,
) -> Estimate:
    """Paired R² gain of ``yhat`` over a baseline forecast on the same rows:
    ``(mean(e_base²) - mean(e²)) / mean((y-ȳ)²)`` = R²(model) - R²(baseline).

    Paired, so the common noise of the target cancels: far tighter than comparing two
    separately estimated R². Positive with ``lo > 0`` = better than the baseline with
    confidence ``level`` (one-sided at ``(1+level)/2``)."""
    y = np.asarray(y, float)
    p = np.asarray(yhat, float)
    b = np.asarray(ybase, float)
    m = np.isfinite(y) & np.isfinite(p) & np.isfinite(b)
    y, p, b = y[m], p[m], b[m]
    if len(y) < 3:
        return Estimate.nan(len(y), level)
    d = (y - y.mean()) ** 2
    v = float(d.mean())
    if v <= 0:
        return Estimate.nan(len(y), level)
    g = (y - b) ** 2 - (y - p) ** 2
    gm = float(g.mean())
    z = (g - gm) / v - gm * (d - v) / v**2
    return _from_influence(gm / v, z, horizon=horizon, level=level, lags=None)


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two forecasters' losses on the same rows (Diebold-Mariano).

    ``mean_diff`` = mean(loss_a - loss_b) (positive: A is worse); ``stat`` its HAC
    t-statistic; ``p_value`` two-sided; ``p_a_worse`` one-sided for "A worse than B".
    """

    mean_diff: Estimate
    stat: float
    p_value: float
    p_a_worse: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean_diff": self.mean_diff.as_dict(),
            "stat": _f(self.stat),
            "p_value": _f(self.p_value),
            "p_a_worse": _f(self.p_a_worse),
            **self.extra,
        }


def diebold_mariano(
    loss_a: np.ndarray,
    loss_b: np.ndarray,
    horizon: int | None = None,
    level: float = 0.95,
) -> Comparison:
    """Diebold-Mariano test of equal expected loss, with the HAC variance above and the
    Harvey-Leybourne-Newbold small-sample factor and Student-t reference.

    Use squared errors for ``loss_*`` to compare MSE. NaN rows (in either) are dropped."""
    a = np.asarray(loss_a, float)
    b = np.asarray(loss_b, float)
    m = np.isfinite(a) & np.isfinite(b)
    d = a[m] - b[m]
    est = mean_estimate(d, horizon, level)
    n = len(d)
    if n < 3 or not est.finite:
        nan = float("nan")
        return Comparison(est, nan, nan, nan)
    if est.se == 0:
        stat = 0.0 if est.value == 0 else math.copysign(math.inf, est.value)
    else:
        h = max(int(horizon or 1), 1)
        hln = math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 1e-12))
        stat = est.value / est.se * hln
    dof = max(n - 1, 1)
    p2 = float(2 * _sc.stdtr(dof, -abs(stat)))  # = 2 scipy.stats.t.sf(|stat|, dof)
    p_worse = float(_sc.stdtr(dof, -stat))  # t.sf(stat, dof); H1: mean(a - b) > 0
    return Comparison(est, float(stat), p2, p_worse)


# ---------------------------------------------------------------------------------------
# block bootstrap
# ---------------------------------------------------------------------------------------
def block_bootstrap(
    stat: Callable[..., float],
    arrays: Sequence[np.ndarray],
    *,
    block: int,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Moving-block (circular) bootstrap of ``stat(*arrays)`` with blocks of ``block`` rows
    (use at least the horizon: blocks must span the overlap). Percentile interval; ``se``
    from the replicate spread; ``n_eff`` from the ratio to the iid variance is not defined
    here (NaN). Rows where any array is NaN are dropped first."""
    arrs = [np.asarray(a, float) for a in arrays]
    m = np.ones(len(arrs[0]), bool)
    for a in arrs:
        m &= np.isfinite(a)
    arrs = [a[m] for a in arrs]
    n = len(arrs[0])
    if n < max(3, block):
        return Estimate.nan(n, level, "block_bootstrap")
    value = float(stat(*arrs))
    rng = np.random.default_rng(seed)
    nb = math.ceil(n / block)
    offs = np.arange(block)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        starts = rng.integers(0, n, nb)
        idx = ((starts[:, None] + offs[None, :]) % n).ravel()[:n]
        reps[i] = stat(*[a[idx] for a in arrs])
    reps = reps[np.isfinite(reps)]
    if len(reps) < 10:
        return Estimate.nan(n, level, "block_bootstrap")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return Estimate(
        value,
        float(lo),
        float(hi),
        float(reps.std(ddof=1)),
        n,
        float("nan"),
        level,
        "block_bootstrap",
    )
