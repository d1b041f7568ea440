"""Drift severity is gated by KL's null calibrated on the training segment itself.

Synthetic, fast (seconds): returns with the simulator's regime-switching volatility
(calm 0.7 / normal 1.0 / turbulent 1.9, durations ~48 h / 72 h / 7 h) and rolling
features of them, so "stationary" includes a calm or a turbulent day, as in the simulator.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from bqx.monitoring.drift import (
    ColumnBaseline,
    build_baseline,
    drift_report,
)

DAY = 1440
WARM = 240
BAD = ("warning", "critical")


def _returns(n: int, rng: np.random.Generator, change: int | None = None, k: float = 1.0):
    mult, dur = np.array([0.7, 1.0, 1.9]), np.array([2880.0, 4320.0, 420.0])
    reg = np.empty(n, int)
    s, i = 1, 0
    while i < n:
        n_bars = int(rng.exponential(dur[s])) + 1
        reg[i : i + n_bars] = s
        i += n_bars
        s = int(rng.choice([j for j in range(3) if j != s]))
    r = rng.standard_t(4, n) * mult[reg]
    if change is not None:
        r[change:] *= k  # a volatility regime x k from bar `change` on
    return r


def _features(r: np.ndarray) -> dict[str, np.ndarray]:
    s = pd.Series(r)
    f = {
        "std60": s.rolling(60).std(),
        "std240": s.rolling(240).std(),
        "absr_ema": s.abs().ewm(span=30).mean(),
        "max60": s.rolling(60).max(),
        "mean60": s.rolling(60).mean(),
        "tstat60": s.rolling(60).mean() / s.rolling(60).std(),
        "r": s,
        "range120": s.rolling(120).max() - s.rolling(120).min(),
    }
    return {k: v.to_numpy()[WARM:] for k, v in f.items()}


def _base(seed: int = 5) -> dict[str, ColumnBaseline]:
    rng = np.random.default_rng(seed)
    return build_baseline(_features(_returns(20 * DAY + WARM, rng)))


def test_stationary_regime_switching_data_does_not_cry_wolf() -> None:
    base = _base()
    assert all(b.null.keys() == {"1440", "240"} for b in base.values())
    rng = np.random.default_rng(6)
    feats = fa = pair_alarms = 0
    for _ in range(60):  # 60 unchanged days of the same process, one pass each
        rep = drift_report(base, _features(_returns(DAY + WARM, rng)))
        assert rep["calibration"] == "training null"
        feats += len(rep["columns"])
        fa += sum(c["severity"] in BAD for c in rep["columns"])
        pair_alarms += rep["severity"] in BAD
    assert fa / feats <= 0.01, fa / feats  # warning rate per feature-day (measured 0.83 %)
    assert pair_alarms <= 3, pair_alarms  # of 60 pair-days (measured: 3)
    # the raw KL rule alone (no gate) fires on these same kinds of days
    rep = drift_report(base, _features(_returns(DAY + WARM, rng)), family_alpha=None)
    raw = [c["kl"] for c in rep["columns"]]
    assert max(raw) > 0.1  # sampling noise of KL on autocorrelated features


def test_vol_regime_and_level_shift_reach_critical_within_one_pass() -> None:
    base = _base()
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        n, c = 2 * DAY + WARM, DAY + WARM  # one day before the change, one after
        vol = _features(_returns(n, rng, change=c, k=1.9))
        calm = _features(_returns(n, rng))
        first_vol = first_lvl = None
        for k in range(40, DAY + 1, 40):  # a pass every 40 bars over the last 1,440 bars
            e = DAY + k  # feature rows are offset by WARM: the change is at row DAY
            after = np.arange(e - DAY, e) >= DAY
            if first_vol is None:
                rep = drift_report(base, {f: v[e - DAY : e] for f, v in vol.items()})
                first_vol = k if rep["severity"] == "critical" else None
            if first_lvl is None:
                win = {f: v[e - DAY : e] + 2 * base[f].std * after for f, v in calm.items()}
                rep = drift_report(base, win)
                first_lvl = k if rep["severity"] == "critical" else None
        assert first_vol is not None and first_vol <= DAY, (seed, first_vol)
        # a level shift fills the short (last 240 bars) window first
        assert first_lvl is not None and first_lvl <= 240, (seed, first_lvl)


def test_pair_test_escalates_a_small_shift_of_many_features() -> None:
    """30 unrelated AR(1) features each shifted by 0.3 sd: no single feature is
    significant after the per-pair correction, all of them together are."""
    rng = np.random.default_rng(3)
    m = 30

    def ar(n: int) -> np.ndarray:
        return lfilter([1.0], [1.0, -0.95], rng.standard_normal((m, n)), axis=1)

    x = ar(12 * DAY)
    base = build_baseline({f"f{i}": x[i] for i in range(m)})
    quiet = ar(DAY + 500)[:, 500:]
    rep = drift_report(base, {f"f{i}": quiet[i] for i in range(m)})
    assert rep["severity"] == "ok" and not rep["pair_test"]["whole"]["significant"]
    w = ar(DAY + 500)[:, 500:]
    win = {f"f{i}": w[i] + 0.3 * base[f"f{i}"].std for i in range(m)}
    rep = drift_report(base, win)
    assert rep["over_warning"] == 0  # no feature alone
    assert rep["pair_test"]["whole"]["significant"] and rep["severity"] == "critical"
    assert drift_report(base, win, pair_alpha=None)["severity"] == "ok"


def test_old_baseline_without_calibration_still_works_and_says_so() -> None:
    base = _base()
    stored = json.loads(json.dumps({k: v.as_dict() for k, v in base.items()}))
    assert ColumnBaseline.from_dict(stored["std60"]) == base["std60"]  # round trip
    old = {}
    for k, d in stored.items():
        d = {x: y for x, y in d.items() if x not in ("null", "null_corr")}
        old[k] = ColumnBaseline.from_dict(d)
    rng = np.random.default_rng(8)
    rep = drift_report(old, _features(_returns(DAY + WARM, rng)))
    assert rep["calibration"].startswith("bartlett fallback")
    assert "bqx monitor baseline" in rep["calibration"]
    assert rep["pair_test"] == {} and all(c["gate"] == "bartlett" for c in rep["columns"])
    shifted = {f: v + 3 * old[f].std for f, v in _features(_returns(DAY + WARM, rng)).items()}
    assert drift_report(old, shifted)["severity"] == "critical"
