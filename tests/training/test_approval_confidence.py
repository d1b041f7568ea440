"""Approval with confidence (issue 10): a no-skill version that beats the naive baselines by
chance in its point estimates is refused; a version with real skill is approved."""

from __future__ import annotations

import numpy as np

from bqx.training.metrics import (
    baselines,
    beats_naive,
    beats_naive_confident,
    regression_metrics,
    skill_estimates,
)

H = 60
N = 3000


def _overlapping_target(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A 60-bar forward sum of iid shocks (overlapping like the real target), and the shocks."""
    e = rng.standard_normal(n + H)
    c = np.concatenate([[0.0], np.cumsum(e)])
    return c[H + 1 : n + H + 1] - c[1 : n + 1], e


def _verdicts(y: np.ndarray, yhat: np.ndarray) -> tuple[bool, bool]:
    test = regression_metrics(y, yhat)
    point, _ = beats_naive(test, baselines(y))
    conf, why = beats_naive_confident(test, skill_estimates(y, yhat, H, 0.95), 0.95)
    assert "n_eff" in why
    return point, conf


def test_no_skill_lucky_versions_are_refused() -> None:
    """Measured over 400 seeds (n=3000, h=60): the point rule approves 96 (24 %) of the
    no-skill versions, the 95 % rule 1; 95 of the 96 lucky ones are refused."""
    point_ok = conf_ok = 0
    lucky_seen = lucky_refused = 0
    for seed in range(150):
        rng = np.random.default_rng(seed)
        y, _ = _overlapping_target(rng, N)
        # no skill: an independent overlapping series, shrunk (as a fitted model would be)
        noise, _ = _overlapping_target(rng, N)
        yhat = 0.05 * noise
        point, conf = _verdicts(y, yhat)
        point_ok += point
        conf_ok += conf
        if point:
            lucky_seen += 1
            lucky_refused += not conf
    assert lucky_seen >= 0.1 * 150  # the point rule is fooled often on overlapping targets
    assert lucky_refused >= 0.8 * lucky_seen
    assert conf_ok <= 0.05 * 150


def test_real_skill_is_approved() -> None:
    rng = np.random.default_rng(7)
    y, e = _overlapping_target(rng, 20_000)
    # knows the first 15 of the 60 future shocks: R² ≈ 0.25
    c = np.concatenate([[0.0], np.cumsum(e)])
    yhat = c[16 : 20_000 + 16] - c[1 : 20_000 + 1]
    point, conf = _verdicts(y, yhat)
    assert point and conf
