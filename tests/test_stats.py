"""bqx.stats: overlap-aware uncertainty checked against processes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bqx.stats import (
    Estimate,
    block_bootstrap,
    diebold_mariano,
    effective_sample_size,
    fmt_pm,
    long_run_variance,
    mean_estimate,
    metric_estimates,
    skill_vs_baseline,
)


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_of_ar1_matches_the_formula(phi: float) -> None:
    """ESS/n of an AR(1) tends to (1-phi)/(1+phi): the textbook value."""
    rng = np.random.default_rng(1)
    n = 200_000
    x = _ar1(n, phi, rng)
    got = effective_sample_size(x, lags=200) / n
    want = (1 - phi) / (1 + phi)
    assert got == pytest.approx(want, rel=0.12)


def test_ess_of_overlapping_sums_is_about_n_over_h() -> None:
    """A 60-step forward sum of iid noise (the overlap structure of our targets) is worth
    ~n/60 independent rows; the iid answer (n) would be 60x too optimistic."""
    rng = np.random.default_rng(2)
    h, n = 60, 120_000
    e = rng.standard_normal(n + h)
    y = np.convolve(e, np.ones(h), "valid")[:n]
    ratio = n / effective_sample_size(y, horizon=h)
    # true long-run variance ratio is h; Bartlett(2h) captures ~5/6 of it
    assert 0.7 * h < ratio < 1.15 * h


def test_hac_interval_covers_at_nominal_rate_on_overlapping_data() -> None:
    """95 % intervals of the mean of an MA(59) series cover the true mean ~95 % of the time
    (an iid interval would cover ~25 %)."""
    rng = np.random.default_rng(3)
    h, n, reps = 60, 6_000, 300
    cover = cover_iid = 0
    for _ in range(reps):
        e = rng.standard_normal(n + h)
        y = np.convolve(e, np.ones(h), "valid")[:n]
        est = mean_estimate(y, horizon=h)
        cover += est.lo <= 0 <= est.hi
        se_iid = y.std() / np.sqrt(n)
        cover_iid += abs(y.mean()) <= 1.96 * se_iid
    assert 0.88 <= cover / reps <= 0.99
    assert cover_iid / reps < 0.5


def test_long_run_variance_white_noise_is_variance() -> None:
    x = np.random.default_rng(4).standard_normal(50_000)
    assert long_run_variance(x, 20) == pytest.approx(1.0, rel=0.05)


def test_metric_estimates_values_equal_point_metrics() -> None:
    from bqx.training.metrics import regression_metrics

    rng = np.random.default_rng(5)
    y = rng.standard_normal(5_000)
    p = 0.3 * y + rng.standard_normal(5_000)
    est = metric_estimates(y, p, horizon=1, lo=p - 1.6, hi=p + 1.6)
    ref = regression_metrics(y, p)
    for k in ("r2", "mae", "rmse", "da"):
        assert est[k].value == pytest.approx(ref[k], rel=1e-12)
        assert est[k].lo < est[k].value < est[k].hi
    assert 0.8 < est["coverage"].value < 0.95


def test_r2_interval_agrees_with_block_bootstrap() -> None:
    rng = np.random.default_rng(6)
    h, n = 20, 20_000
    e = rng.standard_normal(n + h)
    y = np.convolve(e, np.ones(h), "valid")[:n]
    p = 0.2 * y + rng.standard_normal(n) * 3
    hac = metric_estimates(y, p, horizon=h)["r2"]

    def r2(a: np.ndarray, b: np.ndarray) -> float:
        return 1 - np.mean((a - b) ** 2) / np.var(a)

    bb = block_bootstrap(r2, [y, p], block=4 * h, n_boot=300, seed=1)
    assert bb.se == pytest.approx(hac.se, rel=0.35)


def test_skill_vs_baseline_refuses_luck_and_finds_skill() -> None:
    """Paired R² gain: a no-skill model's gain straddles 0; a skilled one's is > 0."""
    rng = np.random.default_rng(7)
    h, n = 60, 20_000
    e = rng.standard_normal(n + h)
    y = np.convolve(e, np.ones(h), "valid")[:n] / np.sqrt(h)
    noise = rng.standard_normal(n) * 0.05
    zero = np.zeros(n)
    none = skill_vs_baseline(y, noise, zero, horizon=h)
    assert none.lo < 0
    good = skill_vs_baseline(y, 0.3 * y + noise, zero, horizon=h)
    assert good.lo > 0


def test_diebold_mariano_null_rate_and_power() -> None:
    rng = np.random.default_rng(8)
    h, n, reps = 10, 3_000, 200
    rejections = 0
    for _ in range(reps):
        e = rng.standard_normal(n + h)
        y = np.convolve(e, np.ones(h), "valid")[:n]
        pa = rng.standard_normal(n) * 0.5
        pb = rng.standard_normal(n) * 0.5
        res = diebold_mariano((y - pa) ** 2, (y - pb) ** 2, horizon=h)
        rejections += res.p_value < 0.05
    assert rejections / reps < 0.10
    e = rng.standard_normal(n + h)
    y = np.convolve(e, np.ones(h), "valid")[:n]
    res = diebold_mariano((y - 0) ** 2, (y - 0.5 * y) ** 2, horizon=h)
    assert res.p_a_worse < 0.01


def test_formatting_and_nan() -> None:
    assert fmt_pm(0.01234, 0.0301) == "0.012 ± 0.030"
    assert fmt_pm(-0.5, 0.25) == "-0.50 ± 0.25"
    assert fmt_pm(float("nan"), 1) == "n/a"
    e = mean_estimate(np.array([]))
    assert not e.finite and e.n == 0
    d = Estimate(0.1, 0.0, 0.2, 0.05, 100, 40.0).as_dict()
    assert Estimate.from_dict(d) == Estimate(0.1, 0.0, 0.2, 0.05, 100, 40.0)
