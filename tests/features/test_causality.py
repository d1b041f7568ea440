"""No lookahead, proven: changing any bar after t leaves every feature at t unchanged, bit for
bit; the target at t changes exactly when bars in (t, t+60] change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bqx import features as F
from bqx.universe import PAIRS

PAIR = "EURUSD"


def _perturb(
    bars: pd.DataFrame, after: pd.Timestamp, seed: int, frac: float, pairs: list[str]
) -> pd.DataFrame:
    """Change prices, volume and spread of a random subset of bars after ``after`` (same timestamps)."""
    rng = np.random.default_rng(seed)
    out = bars.copy()
    sel = (out["ts"] > after) & out["pair"].isin(pairs)
    idx = out.index[sel]
    if len(idx) == 0:
        return out
    pick = rng.choice(idx, size=max(1, int(len(idx) * frac)), replace=False)
    k = len(pick)
    for col in ("open", "high", "low", "close"):
        out.loc[pick, col] = out.loc[pick, col] * np.exp(rng.normal(0, 0.01, k))
    out.loc[pick, "volume"] = rng.integers(1, 500, k).astype(float)
    out.loc[pick, "spread"] = out.loc[pick, "spread"] * rng.uniform(0.2, 5.0, k)
    return out


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    i=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(0, 2**31 - 1),
    frac=st.sampled_from([0.001, 0.05, 1.0]),
    scope=st.sampled_from(["pair", "others", "all"]),
)
def test_future_bars_do_not_change_features_bit_for_bit(bars_small, i, seed, frac, scope):
    full = F.build(bars_small, PAIR, with_target=False)
    t = full.index[i % len(full)]
    pairs = {"pair": [PAIR], "others": [p for p in PAIRS if p != PAIR], "all": list(PAIRS)}[scope]
    changed = _perturb(bars_small, t, seed, frac, pairs)
    again = F.build(changed, PAIR, with_target=False)
    a = full.loc[:t].to_numpy()
    b = again.loc[:t].to_numpy()
    # bit-for-bit: identical bytes (NaN in the same places, same payload)
    assert a.shape == b.shape
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64)), "a feature at or before t changed"
    # and the perturbation did change something after t (the test can fail)
    if (t < full.index[-1]) and scope != "others":
        assert not np.array_equal(
            full.loc[t:].iloc[1:].to_numpy(), again.loc[t:].iloc[1:].to_numpy(), equal_nan=True
        )


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(i=st.integers(min_value=200, max_value=3000), k=st.integers(min_value=1, max_value=120))
def test_target_depends_exactly_on_the_next_60_bars(bars_small, i, k):
    y = F.target_series(bars_small, PAIR)
    t = y.index[i]
    pos = y.index.get_loc(t)
    bar_ts = y.index[pos + k]
    changed = bars_small.copy()
    m = (changed["pair"] == PAIR) & (changed["ts"] == bar_ts)
    changed.loc[m, ["open", "high", "low", "close"]] *= 1.001
    y2 = F.target_series(changed, PAIR)
    same = y2.loc[t] == y.loc[t]
    if k <= 60:
        assert not same, f"target at t did not react to bar t+{k}"
    else:
        assert same, f"target at t reacted to bar t+{k} (beyond the horizon)"
    # targets before t-60... are never affected by bar t+k
    earlier = y.index[max(0, pos + k - 61)]
    assert np.array_equal(y.loc[:earlier].to_numpy(), y2.loc[:earlier].to_numpy(), equal_nan=True)


def test_target_definition_matches_spec(bars_small):
    y = F.target_series(bars_small, PAIR)
    c = bars_small[bars_small.pair == PAIR].set_index("ts")["close"]
    lc = np.log(c.to_numpy())
    i = 1000
    manual = np.mean([lc[i + 60] - lc[i + 60 - j] for j in range(1, 61)])
    assert abs(y.iloc[i] - manual) < 1e-15
    r = F.target_series(bars_small, PAIR, target="return", horizon=15)
    assert abs(r.iloc[i] - (lc[i + 15] - lc[i])) < 1e-15
    assert y.iloc[-60:].isna().all() and y.iloc[:-60].notna().all()


# --- filtered regime probabilities (bqx.decision.regime) -----------------------------------
@pytest.fixture(scope="module")
def regime_fit(bars_small):
    from bqx.decision.regime import fit_regime
    from bqx.features.panel import Panel

    panel = Panel.from_bars(bars_small)  # all 28 pairs: the market's volatility is an input
    close, ts = panel.close, panel.ts
    model = fit_regime(close, ts, panel.pairs, pair=PAIR, restarts=1)
    return model, close, ts


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(i=st.integers(min_value=0, max_value=10_000), seed=st.integers(0, 2**31 - 1))
def test_regime_probabilities_at_t_use_bars_up_to_t_only(regime_fit, i, seed):
    """Filtered posteriors at t on data cut at t == those on the full data, and == those on
    data whose bars after t were replaced (smoothed posteriors would fail both)."""
    model, close, ts = regime_fit
    t = i % len(close)
    full = model.filter(close, ts)
    cut = model.filter(close[: t + 1], ts[: t + 1])
    # to 1e-12, not bit for bit: numpy's SIMD log/exp may round the last elements of an
    # array differently with its length (1 ulp); any use of a later bar moves them far more
    assert np.allclose(full[: t + 1], cut, rtol=0, atol=1e-12), "regime at or before t changed"
    rng = np.random.default_rng(seed)
    changed = close.copy()  # every pair's bars after t
    changed[t + 1 :] *= np.exp(rng.normal(0, 0.01, changed[t + 1 :].shape))
    again = model.filter(changed, ts)
    assert np.allclose(full[: t + 1], again[: t + 1], rtol=0, atol=1e-12)
    if t < len(close) - 2:  # the test can fail: later probabilities do move
        assert not np.array_equal(full[t + 1 :], again[t + 1 :])
    # the serving path (last bar only, fixed burn-in) gives the same number
    assert np.allclose(model.at(close[: t + 1], ts[: t + 1]), full[t], atol=1e-9)


def test_hmmlearn_smoothed_posteriors_would_look_ahead(regime_fit):
    """Why we run our own forward pass: hmmlearn's predict_proba (smoothed) at t changes when
    only bars after t change, the filtered value does not."""
    from hmmlearn.hmm import GaussianHMM

    model, close, ts = regime_fit
    h = GaussianHMM(3, "full")
    h.startprob_, h.transmat_ = model.start, model.transmat
    h.means_, h.covars_ = model.means[:, model.dims], model.covars
    obs = model.observe(close, ts, None)[:, model.dims]
    obs = obs[np.isfinite(obs).all(axis=1)]
    t = len(obs) // 2
    a = h.predict_proba(obs)[t]
    b = h.predict_proba(obs[: t + 1])[t]
    assert not np.allclose(a, b, atol=1e-6)
