"""The rollout's paired quality check (what rolls a worse candidate back): a candidate whose
forecasts are clearly worse on the same matured bars gets a small one-sided p-value; an
equally good one does not, on overlapping (autocorrelated) targets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.rollout.quality import paired_quality

H = 10


def _outcomes(seed: int, noise_c: float) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 600
    eps = rng.normal(0, 1, n + H)
    y = np.convolve(eps, np.ones(H), "valid")[:n]  # overlapping H-bar sums
    signal = 0.5 * y + rng.normal(0, 1, n)
    idx = pd.RangeIndex(n)
    base = pd.DataFrame({"target": y, "prediction": 0.8 * signal}, index=idx)
    cand = pd.DataFrame({"target": y, "prediction": 0.8 * signal + rng.normal(0, noise_c, n)})
    return {"baseline": base, "candidate": cand.set_index(idx)}


def test_a_clearly_worse_candidate_is_flagged() -> None:
    q = paired_quality(_outcomes(1, noise_c=3.0), horizon=H)
    assert q["n_paired"] == 600 and q["mse_candidate"] > q["mse_baseline"]
    assert q["p_candidate_worse"] < 0.001


def test_an_equal_candidate_is_rarely_flagged() -> None:
    """Same forecasts + tiny noise: p < 0.01 in at most a few of 100 seeds."""
    ps = [paired_quality(_outcomes(s, noise_c=1e-9), horizon=H)["p_candidate_worse"]
          for s in range(100)]  # fmt: skip
    assert sum(p < 0.01 for p in ps) <= 5
