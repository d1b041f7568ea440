"""Drift: same distribution stays quiet, shifted level / volatility reach critical."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.monitoring.baseline import compute_baseline
from bqx.monitoring.drift import drift_frame, feature_drift


def test_drift_quiet_when_stationary_and_critical_on_shift():
    rng = np.random.default_rng(0)
    base = compute_baseline(pd.DataFrame({"a": rng.standard_normal(50_000)}))
    col = base["columns"]["a"]
    same = feature_drift(col, rng.standard_normal(1440))
    assert same["severity"] == "ok" and same["kl"] < 0.02 and same["out_of_range"] < 0.01
    level = feature_drift(col, rng.standard_normal(1440) + 1.5)
    assert level["severity"] == "critical" and level["wasserstein_std"] > 1.2
    vol = feature_drift(col, 3 * rng.standard_normal(1440))
    assert vol["severity"] == "critical" and vol["out_of_range"] > 0
    few = feature_drift(col, rng.standard_normal(20))
    assert few["severity"] == "insufficient"
    # a feature missing from the captures is all-missing, not an error
    df = drift_frame(base, pd.DataFrame({"b": np.zeros(200)}))
    assert df.loc[0, "missing_rate"] == 1.0 and df.loc[0, "severity"] == "insufficient"
