"""The second market column: a pair's realised volatility relative to the market's.

The simulator's volatility regime is shared by every pair, and the training days hold it,
so a x1.9 change of one pair's volatility stays inside the training spread of its own level
on most days (``rvol_60``'s level test misses it). Over the cross-section - the mean of the
other pairs' ln rvol_60, each centred on its training mean - the regime cancels: what is
left is the pair's own (benchmarks/bench_drift_relative.py measures it on the simulator).
Fast synthetic data here: 10 pairs with a shared regime (x0.7 / x1.0 / x1.9, spells of
~48 h / 72 h / 7 h) and each pair's own slowly varying volatility.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bqx.monitoring.baseline import parse_baseline, training_baseline
from bqx.monitoring.drift import (
    MARKET_REL,
    MARKET_VOL,
    drift_report,
    relative_column,
    relative_vol,
)
from tests.monitoring.test_market_column import _regimes

DAY = 1440
PAIRS = [f"P{i}" for i in range(10)]
MULT = np.array([0.7, 1.0, 1.9])


def _rvol(r: np.ndarray) -> np.ndarray:
    """Rolling population std of 60 returns per column (the pipeline's rvol_60 definition)."""
    return pd.DataFrame(r).rolling(60).std(ddof=0).to_numpy()


def _returns(n: int, seed: int, regime_start: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    reg = MULT[_regimes(n, rng, start=regime_start)]
    # each pair's own log-volatility: AR(1) with a ~1 day memory, sd 0.1
    phi = 1 - 1 / DAY
    e = rng.normal(0, 0.1 * np.sqrt(1 - phi**2), (n, len(PAIRS)))
    h = np.zeros_like(e)
    for t in range(1, n):
        h[t] = phi * h[t - 1] + e[t]
    base = np.linspace(0.6, 1.6, len(PAIRS))  # pairs differ in their typical volatility
    return 1e-4 * base * reg[:, None] * np.exp(h) * rng.standard_t(5, (n, len(PAIRS)))


def _baseline(rv: np.ndarray, train: slice) -> dict:
    rng = np.random.default_rng(0)
    n = train.stop - train.start
    X = pd.DataFrame({"a": rng.normal(size=n), MARKET_VOL: rv[train, 0]})
    market = {p: rv[train, j] for j, p in enumerate(PAIRS) if j}
    b = training_baseline(X, ["a"], rng.normal(size=n), rng.normal(size=n), market=market)
    return parse_baseline(json.loads(json.dumps(b)))  # as stored with the version


def _window(base: dict, rv: np.ndarray, rows: slice) -> dict[str, np.ndarray]:
    rb = base[MARKET_REL]
    names = list(rb.centers)
    others = rv[rows][:, [PAIRS.index(p) for p in names]]
    rel = relative_vol(rv[rows, 0], others, np.array([rb.centers[p] for p in names]))
    rng = np.random.default_rng(rows.start)
    return {"a": rng.normal(size=rows.stop - rows.start), MARKET_VOL: rv[rows, 0], MARKET_REL: rel}


def test_relative_column_is_baselined_with_its_centres_and_round_trips() -> None:
    rv = _rvol(_returns(8 * DAY, seed=1))[60:]
    base = _baseline(rv, slice(0, 8 * DAY - 60))
    rb = base[MARKET_REL]
    assert set(rb.centers) == set(PAIRS[1:]) and rb.level["1440"][1] > 0
    for j, p in enumerate(PAIRS[1:], 1):
        assert np.isclose(rb.centers[p], np.mean(np.log(rv[:, j])))
    # without the other pairs: no relative column, the rest as before
    X = pd.DataFrame({"a": np.arange(3 * DAY, dtype=float), MARKET_VOL: rv[: 3 * DAY, 0]})
    b = training_baseline(X, ["a"], np.zeros(3 * DAY), np.zeros(3 * DAY))
    assert MARKET_REL not in b["columns"] and MARKET_VOL in b["columns"]


def test_relative_vol_needs_most_of_the_cross_section() -> None:
    own = np.array([2.0, 2.0, 2.0, np.nan])
    others = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, np.nan],
                       [1.0, np.nan, np.nan, 1.0], [1.0, 1.0, 1.0, 1.0]])  # fmt: skip
    rel = relative_vol(own, others, np.zeros(4))
    assert rel[0] == 2.0 and rel[1] == 2.0  # 3 of 4 others: enough (>= 75 %)
    assert np.isnan(rel[2]) and np.isnan(rel[3])  # 2 of 4; no own value
    r2, centers = relative_column(np.array([1.0, 4.0]), {"x": np.array([1.0, 4.0])})
    assert np.allclose(r2, [2.0, 2.0]) and np.isclose(centers["x"], np.log(2.0))


def test_a_pair_specific_x19_is_critical_within_a_day_a_market_wide_one_is_not_relative() -> None:
    """20 training days; then 10 unchanged days (a pass every 240 bars), on 3 seeds: the
    relative level's null is far narrower than the pair's own level's and it stays quiet
    on unchanged days; then one pair x1.9 from a normal-regime day: its relative level is
    critical within the day, while the same change applied to every pair leaves the
    relative level inside the training spread."""
    days_alarmed = days = 0
    for seed in (2, 4, 5):
        rv = _rvol(_returns(31 * DAY + 60, seed=seed))[60:]
        base = _baseline(rv, slice(0, 20 * DAY))
        rel_sd, own_sd = base[MARKET_REL].level["1440"][1], base[MARKET_VOL].level["1440"][1]
        assert rel_sd < 0.5 * own_sd, (rel_sd, own_sd)  # measured 0.078-0.089 vs 0.20-0.24
        for d in range(20, 30):
            sig = [
                drift_report(base, _window(base, rv, slice(e - DAY, e)))["market"][MARKET_REL][
                    "significant"
                ]
                for e in range(d * DAY + 240, (d + 1) * DAY + 1, 240)
            ]
            days += 1
            days_alarmed += any(sig)
        for k in range(3):
            r2 = _returns(2 * DAY + 60, seed=10 * seed + k, regime_start=1)
            c = DAY + 60
            one = r2.copy()
            one[c:, 0] *= 1.9
            every = r2.copy()
            every[c:] *= 1.9
            rows = slice(DAY, 2 * DAY)  # the day after the change (rvol rows offset by 60)
            rep = drift_report(base, _window(base, _rvol(one)[60:], rows))
            rel = rep["market"][MARKET_REL]
            assert rel["significant"] and rel["ratio"] > 1.5, (seed, k, rel)
            assert rep["severity"] == "critical"
            rep_all = drift_report(base, _window(base, _rvol(every)[60:], rows))
            assert abs(rep_all["market"][MARKET_REL]["z"]) < 3.0, (seed, k, rep_all["market"])
    assert days == 30 and days_alarmed <= 1, days_alarmed  # measured 1 (seed 2, |z| 3.66)


def test_the_pass_builds_the_relative_column_from_the_other_pairs_captures(
    tmp_path: Path,
) -> None:
    """Through the pass: the captured rvol_60 of the other pairs at the same bars is the
    cross-section; a pair x1.9 alone is critical by the relative test (alert text names
    it), unchanged it is not, and a pass for that pair alone reads the others too."""
    from bqx.monitoring.baseline import BASELINE_FILE
    from bqx.monitoring.run import drift_pass
    from bqx.state import StateDB
    from bqx.state.captures import capture_row
    from tests.monitoring.test_capture_format import T0, _Registry

    n = 21 * DAY + 60
    r = _returns(n, seed=3)
    rv = _rvol(r)[60:]
    train = slice(0, 20 * DAY)
    rng = np.random.default_rng(1)
    m = train.stop
    X = pd.DataFrame({"a": rng.normal(size=m), MARKET_VOL: rv[train, 0]})
    b = training_baseline(X, ["a"], rng.normal(size=m), rng.normal(size=m),
                          market={p: rv[train, j] for j, p in enumerate(PAIRS) if j})  # fmt: skip
    d = tmp_path / "v1"
    d.mkdir()
    (d / BASELINE_FILE).write_text(json.dumps(b))
    dirs = {("P0", "1"): d}
    for j, p in enumerate(PAIRS[1:], 1):  # the other pairs' versions (no relative column)
        dirs[(p, "1")] = dp = tmp_path / p
        dp.mkdir()
        Xp = pd.DataFrame({MARKET_VOL: rv[train, j]})
        bp = training_baseline(Xp, [], rng.normal(size=m), rng.normal(size=m))
        (dp / BASELINE_FILE).write_text(json.dumps(bp))
    reg = _Registry(dirs)
    for label, k in (("unchanged", 1.0), ("x1.9", 1.9)):
        s = StateDB(f"sqlite:///{tmp_path / f'{label}.db'}")
        day = rv[20 * DAY :].copy()
        day[:, 0] *= k  # P0's volatility x k (the 60-bar window is all after the change)
        rows = []
        for i in range(DAY):
            t = T0 + pd.Timedelta(minutes=i)
            for j, p in enumerate(PAIRS):
                names = ["a", MARKET_VOL] if j == 0 else [MARKET_VOL]
                vals = [rng.normal(), day[i, 0]] if j == 0 else [day[i, j]]
                rows.append(capture_row(decision_id=f"{p}-{i}", pair=p, model_version="1",
                                        asof_ts=t, names=names, values=np.array(vals)))  # fmt: skip
        s.write_captures(rows)
        end = T0 + pd.Timedelta(minutes=DAY - 1)
        rep, conds = drift_pass(s, reg, end)
        p0 = next(x for x in rep["pairs"] if x["pair"] == "P0")
        rel = p0["market"][MARKET_REL]
        one, _ = drift_pass(s, reg, end, pair="P0")
        assert [x["pair"] for x in one["pairs"] if x.get("market")] == ["P0"]
        p0_alone = next(x for x in one["pairs"] if x["pair"] == "P0")
        assert p0_alone["market"] == p0["market"]  # the others were read for it too
        firing = [c for c in conds if c.firing and c.pair == "P0"]
        if k == 1.0:
            assert not rel["significant"] and p0["severity"] == "ok", rel
            assert not firing
            ratio0 = rel["ratio"]
        else:
            # the same bars with P0's rvol_60 x1.9: the relative level x1.9 exactly
            assert rel["significant"] and np.isclose(rel["ratio"] / ratio0, 1.9), rel
            assert firing and any(MARKET_REL in c.message for c in firing)
        s.close()


def test_train_pair_baselines_the_relative_column_from_the_feature_store(monkeypatch) -> None:
    """Training reads the other pairs' rvol_60 from the feature store at the pair's
    training rows: the version's baseline carries the relative column and its centres
    (the mean of each other pair's ln rvol_60 over those rows)."""
    from datetime import timedelta

    from bqx.config import load_settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.features.store import FeatureStore
    from bqx.training.train import train_pair

    monkeypatch.setenv("BQX_BAR_INTERVAL", "5min")
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "1500")
    s = load_settings()
    pairs = ["EURUSD", "GBPUSD", "USDJPY"]
    bars = generate(days=30, pairs=pairs, seed=8, interval=timedelta(minutes=5)).bars
    st = open_store(settings=s)
    fs = FeatureStore(s.features_dir, horizon=s.horizon, target=s.target)
    try:
        st.upsert(bars)
        fs.build(st, pairs)
    finally:
        st.close()
    res = train_pair("EURUSD", s, model="ridge", n_jobs=1)
    base = parse_baseline(res.extra["baseline"])
    rb = base[MARKET_REL]
    assert set(rb.centers) == {"GBPUSD", "USDJPY"} and rb.n == res.rows["train"]
    lo, hi = res.artifact.data_window["train"]
    for p in ("GBPUSD", "USDJPY"):
        stored = fs.read(p, lo, hi)[MARKET_VOL]
        # the training rows of EURUSD and the stored rows of p share the bar grid here
        assert np.isclose(rb.centers[p], np.log(stored.astype(np.float64)).mean(), rtol=1e-4)
