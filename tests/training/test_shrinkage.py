"""Out-of-sample shrinkage (issue 10): the lower confidence bound of the validation slope."""

from __future__ import annotations

import numpy as np

from bqx.training.shrinkage import fit_shrinkage


def _overlap(rng: np.random.Generator, n: int, h: int = 60) -> tuple[np.ndarray, np.ndarray]:
    e = rng.standard_normal(n + h)
    c = np.concatenate([[0.0], np.cumsum(e)])
    return c[h + 1 : n + h + 1] - c[1 : n + 1], c


def test_noise_gives_no_view_and_signal_keeps_most_of_its_slope() -> None:
    zeros = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y, _ = _overlap(rng, 5000)
        noise, _ = _overlap(rng, 5000)
        s = fit_shrinkage(y, noise, horizon=60)
        assert 0.0 <= s.beta <= 1.0
        zeros += s.beta == 0.0
    assert zeros >= 36  # β > 0 on noise only when the slope is "significant" by chance
    rng = np.random.default_rng(1)
    y, c = _overlap(rng, 20_000)
    good = c[31 : 20_000 + 31] - c[1 : 20_000 + 1]  # knows half the future: slope 1
    s = fit_shrinkage(y, good, horizon=60)
    assert 0.7 <= s.beta <= 1.0 and abs(s.raw_beta - 1.0) < 0.2
    assert fit_shrinkage(y, np.zeros_like(y)).beta == 0.0
