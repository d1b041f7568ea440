"""One-value intervals and the validity check give exactly what the array forms give."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bqx.training.artifact import ModelArtifact
from bqx.training.intervals import Conformal
from bqx.training.validity import missing_features

SCALES = [0.0, -1.0, 1e-15, 1e-12, 3.7e-4, 0.5, 12.0, np.inf, -np.inf, np.nan, 5e-324]
YHATS = [0.0, -0.0, 1.25e-5, -3.3e-4, 7.0, np.inf, np.nan]


def _art(c: Conformal) -> SimpleNamespace:
    a = SimpleNamespace(conformal=c, all_columns=["a", "vol", "b"])
    a.scale_of = lambda x: ModelArtifact.scale_of(a, x)  # type: ignore[arg-type]
    return a


def _bits(v: float) -> bytes:
    return np.float64(v).tobytes()


def test_scalar_interval_equals_bounds() -> None:
    for c in (
        Conformal("scaled", 0.9, 1.7321, 500, "vol"),
        Conformal("absolute", 0.8, 2e-4, 90, None),
    ):
        art = _art(c)
        for s in SCALES:
            x = np.array([1.0, s, 2.0])
            for y in YHATS:
                lo, hi = ModelArtifact.interval(art, y, x)  # type: ignore[arg-type]
                rlo, rhi = c.bounds(np.array([y]), art.scale_of(x))
                assert (_bits(lo), _bits(hi)) == (_bits(rlo[0]), _bits(rhi[0])), (c.method, s, y)
                assert type(lo) is float and type(hi) is float


def test_missing_features_share_edges() -> None:
    art = SimpleNamespace(
        features=[f"f{i}" for i in range(7)], all_columns=[f"f{i}" for i in range(7)]
    )
    x = np.ones(7)
    x[[1, 4]] = np.nan  # 5 of 7 finite: 0.714...
    assert missing_features(art, x, 5 / 7) is None  # the share equals the bound: allowed
    assert missing_features(art, x, np.nextafter(5 / 7, 1)) == ["f1", "f4"]
    assert missing_features(art, x, 0.0) is None
