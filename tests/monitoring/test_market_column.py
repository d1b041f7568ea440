"""The market column: realised volatility in return units, monitored beside the features.

Most selected features are scale-free (normalised returns, t-statistics, shares): a
volatility regime x 1.9 leaves them where they were. The market column ``rvol_60`` (the
pipeline's std of the last 60 one-bar log returns) moves by ln 1.9, and its level test
(the day's mean of ln rvol against the training segment's own spread of day levels) flags
it. Synthetic and fast: returns with the simulator's regime-switching volatility (calm 0.7 /
normal 1.0 / turbulent 1.9, durations ~48 h / 72 h / 7 h), so "stationary" includes calm
days and turbulent stretches - and a regime x 1.9 on a normal day looks like a long
turbulent stretch: it moves the level by ~3 null sd, a regime x 3 is flagged. (With 20
training days the level test's predictive threshold is |z| 4.29, not the normal 3.48: x 2.5
lands at z 4.1-4.6 and is flagged in 2 of these 3 seeds.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bqx.monitoring.baseline import parse_baseline, training_baseline
from bqx.monitoring.drift import MARKET_VOL, ColumnBaseline, build_baseline, drift_report

DAY = 1440
WARM = 60
BAD = ("warning", "critical")
MULT, DUR = np.array([0.7, 1.0, 1.9]), np.array([2880.0, 4320.0, 420.0])


def _regimes(n: int, rng: np.random.Generator, start: int = 1) -> np.ndarray:
    reg = np.empty(n, int)
    s, i = start, 0
    while i < n:
        k = int(rng.exponential(DUR[s])) + 1
        reg[i : i + k] = s
        i += k
        s = int(rng.choice([j for j in range(3) if j != s]))
    return reg


def _columns(r: np.ndarray) -> dict[str, np.ndarray]:
    """The market column (rolling population std of 60 returns, as the pipeline's rvol_60)
    and two scale-free features of the same returns."""
    s = pd.Series(r)
    sd = s.rolling(60).std(ddof=0)
    f = {
        MARKET_VOL: sd,
        "tstat60": s.rolling(60).mean() / sd,
        "z_ret": s / sd,
    }
    return {k: v.to_numpy()[WARM:] for k, v in f.items()}


def test_vol_regime_is_critical_within_a_day_and_stationary_days_are_not() -> None:
    rng = np.random.default_rng(5)
    n = 60 * DAY + WARM  # 20 training days, then 40 unchanged days of the same process
    cols = _columns(1e-4 * rng.standard_t(4, n) * MULT[_regimes(n, rng)])
    base = build_baseline({k: v[: 20 * DAY] for k, v in cols.items()})
    assert base[MARKET_VOL].level.keys() == {"1440"} and not base["tstat60"].level
    features_only = {k: v for k, v in base.items() if k != MARKET_VOL}
    # unchanged days (calm days, turbulent stretches): the market test never fires
    z_quiet = []
    for e in range(21 * DAY, 60 * DAY + 1, 240):  # a pass every 240 bars
        rep = drift_report(base, {k: v[e - DAY : e] for k, v in cols.items()})
        assert not rep["market"][MARKET_VOL]["significant"], rep["market"]
        z_quiet.append(rep["market"][MARKET_VOL]["z"])
    assert len(z_quiet) == 235 and max(abs(z) for z in z_quiet) < 2.5  # measured 1.48
    # a normal-volatility day, then every return x k from the change on (3 seeds)
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        n, c = 2 * DAY + WARM, DAY + WARM
        r = 1e-4 * rng.standard_t(4, n)  # the normal regime throughout
        cols = _columns(np.concatenate([r[:c], 3.0 * r[c:]]))
        first = None
        for k in range(60, DAY + 1, 60):  # a pass every 60 bars over the last 1,440 bars
            e = DAY + k  # rows are offset by WARM: the change is at row DAY
            rep = drift_report(base, {f: v[e - DAY : e] for f, v in cols.items()})
            if rep["severity"] == "critical":
                first = k
                break
        assert first is not None and first <= DAY, (seed, first)
        mk = rep["market"][MARKET_VOL]
        assert mk["significant"] and mk["ratio"] > 1.2 and mk["z"] > 0
        assert next(c for c in rep["columns"] if c["name"] == MARKET_VOL)["severity"] == "critical"
        # the scale-free features alone do not see it (what the market column is for)
        late = {f: cols[f][DAY:] for f in features_only}
        assert drift_report(features_only, late)["severity"] == "ok"
        # x 1.9 - the simulator's own turbulent multiplier - moves the level by about three
        # null sd, above every unchanged pass, but not to the default level (3.5 sd): the
        # training days held turbulent stretches (docs/performance.md)
        cols = _columns(np.concatenate([r[:c], 1.9 * r[c:]]))
        z19 = drift_report(base, {f: v[DAY:] for f, v in cols.items()})["market"][MARKET_VOL]["z"]
        assert max(abs(z) for z in z_quiet) < z19 < 3.5, z19  # measured 2.9-3.3


def test_market_column_is_the_pipelines_causal_rvol_60() -> None:
    """The value monitored at bar t is the std of the 60 one-bar log returns ending at t
    (bars <= t), computed by the feature pipeline that training and serving use: changing
    every bar after t leaves it unchanged."""
    from bqx.data.simulator import generate
    from bqx.features import pipeline as F

    rng = np.random.default_rng(1)
    bars = generate(days=1, pairs="EURUSD", seed=3).bars.reset_index(drop=True)
    full = F.build(bars, "EURUSD")[MARKET_VOL].to_numpy()
    lr = np.diff(np.log(bars["close"].to_numpy()))
    for t in (300, 700, 1200):
        assert np.isclose(full[t], np.std(lr[t - 60 : t]), rtol=1e-9), t
        other = bars.copy()
        after = other.index > t
        noise = np.exp(np.cumsum(rng.normal(0.0, 1e-3, after.sum())))
        for col in ("open", "high", "low", "close"):  # a different future
            other.loc[after, col] *= noise
        again = F.build(other, "EURUSD")[MARKET_VOL].to_numpy()
        assert np.array_equal(again[: t + 1], full[: t + 1], equal_nan=True), t
        assert not np.isclose(again[t + 61], full[t + 61])  # the perturbation is seen later


def test_training_baseline_holds_the_market_column_and_old_baselines_still_work() -> None:
    rng = np.random.default_rng(2)
    n = 6 * DAY
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    X[MARKET_VOL] = np.exp(rng.normal(-9, 0.2, n))
    b = training_baseline(X, ["a", "b"], rng.normal(size=n), rng.normal(size=n))
    base = parse_baseline(json.loads(json.dumps(b)))  # stored as JSON with the version
    assert set(base) == {"a", "b", "prediction", "target", MARKET_VOL}
    assert base[MARKET_VOL].level["1440"][1] > 0 and not base["a"].level
    win = {k: rng.normal(size=DAY) for k in ("a", "b")}
    up = {**win, MARKET_VOL: np.exp(rng.normal(-9 + np.log(3.0), 0.2, DAY))}
    assert drift_report(base, up)["market"][MARKET_VOL]["significant"]
    # a baseline made before the market column existed: no column, no level test, as before
    old = {k: ColumnBaseline.from_dict({x: y for x, y in v.as_dict().items() if x != "level"})
           for k, v in base.items() if k != MARKET_VOL}  # fmt: skip
    rep = drift_report(old, up)
    assert rep["market"] == {} and rep["calibration"] == "training null"
    assert [c["name"] for c in rep["columns"]] == ["a", "b"]


def test_pass_over_captures_from_before_the_column_is_not_a_missing_value_alarm(
    tmp_path,
) -> None:
    """The day the service starts capturing the market column, the earlier captures of the
    same version lack it: the pass tests the captured stretch only (no missing-value jump),
    and the service captures the column when serving computes it for the model."""
    from types import SimpleNamespace

    from bqx.monitoring.baseline import BASELINE_FILE
    from bqx.monitoring.capture import ServiceCapture
    from bqx.monitoring.run import drift_pass
    from bqx.state import StateDB
    from bqx.state.captures import capture_row
    from tests.monitoring.test_capture_format import T0, _Registry

    rng = np.random.default_rng(4)
    n = 6 * DAY
    X = pd.DataFrame({"a": rng.normal(size=n), MARKET_VOL: np.exp(rng.normal(-9, 0.2, n))})
    d = tmp_path / "v1"
    d.mkdir()
    b = training_baseline(X, ["a"], rng.normal(size=n), rng.normal(size=n))
    (d / BASELINE_FILE).write_text(json.dumps(b))
    s = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    rows = []
    for i in range(DAY + 200):
        names = ["a"] if i < 200 else ["a", MARKET_VOL]  # the column from row 200 on
        vals = [rng.normal()] + ([float(np.exp(rng.normal(-9, 0.2)))] if i >= 200 else [])
        rows.append(capture_row(decision_id=f"d{i}", pair="EURUSD", model_version="1",
                                asof_ts=T0 + pd.Timedelta(minutes=i), names=names,
                                values=np.array(vals)))  # fmt: skip
    s.write_captures(rows)
    end = T0 + pd.Timedelta(minutes=DAY + 199)
    rep, conds = drift_pass(s, _Registry({("EURUSD", "1"): d}), end)
    col = next(c for c in rep["pairs"][0]["columns"] if c["name"] == MARKET_VOL)
    assert col["missing_rate"] == 0.0 and col["n"] == DAY  # the captured stretch
    assert rep["pairs"][0]["severity"] == "ok" and not conds[0].firing
    assert not rep["pairs"][0]["market"][MARKET_VOL]["significant"]
    s.close()

    # serving: the column rides along when the model needs it (the intervals' scale)
    from bqx.features import columns

    cap = ServiceCapture.__new__(ServiceCapture)
    cap._idx = {}
    art = SimpleNamespace(features=["ret_skew_240"], needed_columns=("ret_skew_240", MARKET_VOL))
    assert cap._index(art)[1] == ["ret_skew_240", MARKET_VOL]
    art2 = SimpleNamespace(features=["ret_skew_240"], needed_columns=("ret_skew_240",))
    assert cap._index(art2)[1] == ["ret_skew_240"]  # not computed for the model: not captured
    assert cap._index(art)[0][-1] == columns().index(MARKET_VOL)


def test_level_test_is_predictive_so_a_short_baseline_is_not_over_trusted() -> None:
    """The null's mean and sd come from N training days: a new day's level is judged by the
    prediction interval (Student t, N - 1 df, x sqrt(1 + 1/N)), not by a normal - the same
    z is significant after 250 training days and not after 20."""
    from scipy.stats import norm

    from bqx.monitoring.drift import MARKET_ALPHA, level_test, level_z_threshold

    rng = np.random.default_rng(9)
    thr = {}
    for days in (20, 250):
        v = np.exp(rng.normal(-9, 0.1, days * DAY))
        b = build_baseline({MARKET_VOL: v})[MARKET_VOL]
        mu, sd, _ = b.level["1440"]
        day = np.full(DAY, np.exp(mu + 4.0 * sd))  # a day at z = 4.0
        t = level_test(b, day)
        assert t is not None and t["training_windows"] == days and t["df"] == days - 1
        assert np.isclose(t["z"], 4.0)
        assert t["p"] < MARKET_ALPHA if days == 250 else t["p"] > MARKET_ALPHA
        thr[days] = level_z_threshold(t, MARKET_ALPHA)
        # the threshold is where p crosses alpha
        assert np.isclose(
            level_test(b, np.exp(np.log(day) - t["log_mean"] + mu + thr[days] * sd))["p"],
            MARKET_ALPHA,
        )
        assert (t["p"] < MARKET_ALPHA) == (abs(t["z"]) > thr[days])
    assert thr[20] > 4.2 and 3.48 < thr[250] < 3.55 and norm.isf(MARKET_ALPHA / 2) < thr[250]
