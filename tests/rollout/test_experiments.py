"""The A/B analysis is calibrated under the null and finds a planted effect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bqx.rollout.experiments import analyze, beta_binomial, calibration, decide


def test_null_calibration_with_overlapping_targets() -> None:
    """A = B, 30-bar overlapping targets, persistent forecasts: P(B>A) > 0.95 must occur at
    its nominal 5 % with ESS-adjusted counts; naive Bernoulli counts are far off."""
    c = calibration(n_sims=300, n=3000, horizon=30, effect=0.0, seed=1)
    print(json.dumps(c))
    # 300 simulations: binomial sd of a 5 % rate is 1.3 %; allow 3 sd
    assert 0.01 <= c["adjusted_gt_0.95"] <= 0.09
    assert c["naive_gt_0.95"] > 0.2  # why the adjustment exists


def test_planted_effect_is_found() -> None:
    c = calibration(n_sims=60, n=3000, horizon=30, effect=0.5, seed=2)
    print(json.dumps(c))
    assert c["adjusted_gt_0.95"] >= 0.8


def test_posterior_summaries_and_decision_rule() -> None:
    r = beta_binomial(530, 1000, 470, 1000)
    assert r["p_b_better"] < 0.05 and r["diff_lo"] < r["diff_mean"] < r["diff_hi"] < 0
    assert r["loss_choose_b"] > r["loss_choose_a"]
    idx = pd.date_range("2024-01-01", periods=400, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    y = rng.standard_normal(400)
    a = pd.DataFrame({"prediction": rng.standard_normal(400), "target": y}, index=idx)
    b = pd.DataFrame({"prediction": y + 0.1 * rng.standard_normal(400), "target": y}, index=idx)
    an = analyze(a, b, horizon=1)
    assert an["p_b_better"] > 0.99 and an["sq_err_diff"]["lo"] > 0  # B far better
    assert decide(an, min_samples=1000)[0] is None  # too few samples: keep running
    assert decide(an, min_samples=100)[0] == "b"
    few = analyze(a.iloc[:100], b.iloc[:100], horizon=1)
    assert decide(few, min_samples=10)[0] is None  # ESS below MIN_ESS: keep running
