"""Signals: thresholds, strength, no-trade zones, and scalar/vectorised parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.config import SignalSettings
from bqx.errors import UnknownPairError
from bqx.signals import (
    REASONS,
    Signal,
    decide,
    decide_many,
    signal_to_side,
    threshold_for,
    volatility_ratio,
)

OPEN = "2024-01-03 12:00"  # a Wednesday, far from the rollover


@pytest.mark.parametrize(
    ("pred", "expected"),
    [(0.0006, "BUY"), (-0.0006, "SELL"), (0.0005, "HOLD"), (-0.0005, "HOLD"), (0.0, "HOLD")],
)
def test_default_threshold_is_strict(pred, expected):
    s = decide(pred, pair="EURUSD", ts=OPEN)
    assert s.signal == expected
    assert s.threshold == 0.0005
    assert s.reason == ("above_threshold" if expected != "HOLD" else "below_threshold")
    assert s.side == {"BUY": 1, "SELL": -1, "HOLD": 0}[expected]


def test_per_pair_threshold_overrides_accept_any_spelling():
    cfg = SignalSettings(pair_thresholds={"usd/jpy": 0.001})
    assert threshold_for("USDJPY", cfg) == 0.001 and threshold_for("EURUSD", cfg) == 0.0005
    assert decide(0.0008, pair="usdjpy", ts=OPEN, settings=cfg).signal == "HOLD"
    assert decide(0.0008, pair="EURUSD", ts=OPEN, settings=cfg).signal == "BUY"
    frame = pd.DataFrame(
        {"pair": ["USD_JPY", "EURUSD"], "ts": [OPEN] * 2, "prediction": [0.0008] * 2}
    )
    assert list(decide_many(frame, cfg)["signal"]) == ["HOLD", "BUY"]
    with pytest.raises(UnknownPairError):
        decide(0.001, pair="XXXYYY", ts=OPEN)


def test_volatility_scaling_multiplies_the_threshold_only_when_enabled():
    off = decide(0.0008, pair="EURUSD", ts=OPEN, vol_ratio=2.0)
    assert off.signal == "BUY" and off.threshold == 0.0005
    on = decide(
        0.0008, pair="EURUSD", ts=OPEN, vol_ratio=2.0, settings=SignalSettings(vol_scaling=True)
    )
    assert on.signal == "HOLD" and on.threshold == pytest.approx(0.001)
    calm = decide(
        0.0008, pair="EURUSD", ts=OPEN, vol_ratio=0.5, settings=SignalSettings(vol_scaling=True)
    )
    assert calm.signal == "BUY" and calm.threshold == pytest.approx(0.00025)


def test_strength_formula_hand_computed():
    # edge = 1 - 0.0005/0.001 = 0.5; certainty = 0.001 / (0.001 + 0.0016/2) = 5/9; calm = 1/2
    s = decide(0.001, pair="EURUSD", ts=OPEN, interval=(0.0002, 0.0018), vol_ratio=2.0)
    assert s.strength == pytest.approx(0.5 * (5 / 9) * 0.5)
    assert decide(0.001, pair="EURUSD", ts=OPEN).strength == pytest.approx(0.5)
    assert decide(0.002, pair="EURUSD", ts=OPEN).strength == pytest.approx(0.75)
    assert decide(-0.002, pair="EURUSD", ts=OPEN).strength == pytest.approx(0.75)
    assert decide(0.0004, pair="EURUSD", ts=OPEN).strength == 0.0  # HOLD


def test_strength_is_monotone_and_bounded():
    preds = np.linspace(0.0006, 0.05, 50)
    s = [decide(p, pair="EURUSD", ts=OPEN).strength for p in preds]
    assert np.all(np.diff(s) > 0) and min(s) > 0 and max(s) < 1
    widths = np.linspace(0.0, 0.01, 20)
    s = [decide(0.001, pair="EURUSD", ts=OPEN, interval=(-w / 2, w / 2)).strength for w in widths]
    assert np.all(np.diff(s) < 0)
    s = [decide(0.001, pair="EURUSD", ts=OPEN, vol_ratio=v).strength for v in (0.5, 1.0, 1.5, 3.0)]
    assert s[0] == s[1] and s[1] > s[2] > s[3]


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2024-01-06 12:00", "market_closed"),  # Saturday
        ("2024-01-05 22:30", "market_closed"),  # Friday after 17:00 New York (EST)
        ("2024-01-03 22:00", "rollover"),  # 17:00 New York in winter (UTC-5)
        ("2024-07-03 21:00", "rollover"),  # 17:00 New York in summer (UTC-4)
        ("2024-01-03 21:55", "rollover"),  # 16:55 New York: inside [-5, 5) minutes
        ("2024-01-03 22:04", "rollover"),
        ("2024-01-03 22:05", "above_threshold"),  # 17:05: outside
        ("2024-01-03 21:54", "above_threshold"),
        ("2024-07-03 22:00", "above_threshold"),  # 18:00 New York in summer
    ],
)
def test_no_trade_zones(ts, reason):
    s = decide(0.002, pair="EURUSD", ts=ts)
    assert s.reason == reason
    assert s.signal == ("BUY" if reason == "above_threshold" else "HOLD")
    assert (s.strength == 0) == (reason != "above_threshold")


def test_stale_and_missing_predictions_and_precedence():
    assert decide(0.002, pair="EURUSD", ts=OPEN, stale=True).reason == "stale_data"
    assert decide(float("nan"), pair="EURUSD", ts=OPEN).reason == "no_prediction"
    assert decide(None, pair="EURUSD", ts=OPEN).reason == "no_prediction"
    # stale beats market closed; no prediction beats everything
    assert decide(0.002, pair="EURUSD", ts="2024-01-06 12:00", stale=True).reason == "stale_data"
    assert decide(None, pair="EURUSD", ts="2024-01-06 12:00", stale=True).reason == "no_prediction"
    assert decide(0.002, pair="EURUSD", ts=OPEN, stale=True).signal == "HOLD"


def test_rollover_window_is_configurable():
    cfg = SignalSettings(rollover_minutes=30)
    assert decide(0.002, pair="EURUSD", ts="2024-01-03 21:40", settings=cfg).reason == "rollover"
    cfg0 = SignalSettings(rollover_minutes=0)
    assert decide(0.002, pair="EURUSD", ts="2024-01-03 22:00", settings=cfg0).signal == "BUY"


def test_decide_many_matches_decide_row_by_row():
    rng = np.random.default_rng(0)
    n = 400
    ts = pd.Timestamp("2024-03-08 12:00", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 7 * 1440, n), unit="min"
    )  # a week across the weekend, the US DST switch (March 10) and 7 rollovers
    frame = pd.DataFrame(
        {
            "pair": rng.choice(["EURUSD", "USDJPY", "gbp/usd"], n),
            "ts": ts,
            "prediction": rng.normal(0, 0.001, n),
            "lo": rng.normal(-0.001, 0.0005, n),
            "hi": rng.normal(0.001, 0.0005, n),
            "vol_ratio": rng.choice([np.nan, 0.7, 1.0, 2.5], n),
            "stale": rng.random(n) < 0.05,
        }
    )
    frame.loc[rng.random(n) < 0.05, "prediction"] = np.nan
    frame.loc[rng.random(n) < 0.3, ["lo", "hi"]] = np.nan
    cfg = SignalSettings(vol_scaling=True, pair_thresholds={"USDJPY": 0.0008})
    out = decide_many(frame, cfg)
    assert set(out["reason"]) <= set(REASONS)
    for r, o in zip(frame.itertuples(), out.itertuples(), strict=True):
        iv = None if np.isnan(r.lo) else (r.lo, r.hi)
        vr = None if np.isnan(r.vol_ratio) else r.vol_ratio
        s = decide(
            r.prediction,
            pair=r.pair,
            ts=r.ts,
            interval=iv,
            vol_ratio=vr,
            stale=r.stale,
            settings=cfg,
        )
        assert s == Signal(o.signal, o.strength, o.reason, o.threshold)
        assert o.side == s.side


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the array rules on inf inputs
@pytest.mark.parametrize("vol_scaling", [False, True])
def test_scalar_decide_equals_the_array_rules_bit_for_bit_on_edge_cases(vol_scaling):
    """The API's one-row path (plain floats) against the array rules of ``decide_many``
    on adversarial values: zero and negative thresholds and predictions, infinities,
    zero-width and inverted intervals, non-positive and infinite volatility ratios."""
    rng = np.random.default_rng(1)
    n = 1500
    vals = np.array([0.0, -0.0, 1e-12, -1e-12, 0.0005, -0.0005, 0.0006, 0.3, -0.3, np.inf,
                     -np.inf, np.nan])  # fmt: skip
    frame = pd.DataFrame(
        {
            "pair": "EURUSD",
            "ts": pd.Timestamp("2024-11-01 12:00", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 14 * 1440, n), unit="min"),
            "prediction": np.where(
                rng.random(n) < 0.5, rng.choice(vals, n), rng.normal(0, 1e-3, n)
            ),
            "lo": rng.choice([np.nan, 0.0, -1e-3, 1e-3, -np.inf, 2e-4], n),
            "hi": rng.choice([np.nan, 0.0, -1e-3, 1e-3, np.inf, 2e-4], n),
            "vol_ratio": rng.choice([np.nan, 0.0, -1.0, 0.5, 1.0, 3.0, np.inf, 1e-300], n),
            "stale": rng.random(n) < 0.05,
        }
    )
    for thr in (0.0005, 1e-300, 0.0, -0.0002):  # the last two only by bypassing validation
        cfg = SignalSettings(vol_scaling=vol_scaling, rollover_minutes=7)
        cfg = cfg.model_copy(update={"threshold": thr})
        out = decide_many(frame, cfg)
        for r, o in zip(frame.itertuples(), out.itertuples(), strict=True):
            iv = None if np.isnan(r.lo) and np.isnan(r.hi) else (r.lo, r.hi)
            vr = None if np.isnan(r.vol_ratio) else r.vol_ratio
            s = decide(r.prediction, pair="EURUSD", ts=r.ts, interval=iv, vol_ratio=vr,
                       stale=r.stale, settings=cfg)  # fmt: skip
            assert (s.signal, s.reason) == (o.signal, o.reason)
            assert float(s.strength).hex() == float(o.strength).hex()
            assert float(s.threshold).hex() == float(o.threshold).hex()


def test_ny_clock_equals_the_index_calendar():
    """The scalar New York clock of ``decide`` against ``ny_open``/``minutes_from_rollover``:
    random minutes over the whole nanosecond range and every minute around DST switches."""
    from bqx.calendar import minutes_from_rollover, ny_clock, ny_open

    rng = np.random.default_rng(2)
    lo, hi = (
        pd.Timestamp("1678-01-01").value // 60_000_000_000,
        pd.Timestamp("2261-12-01").value // 60_000_000_000,
    )
    mins = [rng.integers(lo, hi, 3000)]
    for day in ("2024-03-10", "2024-11-03", "2038-03-14", "2038-11-07", "1999-10-31"):
        t0 = pd.Timestamp(day, tz="UTC").value // 60_000_000_000
        mins.append(np.arange(t0 - 1440, t0 + 2 * 1440))
    idx = pd.DatetimeIndex(np.concatenate(mins).astype("datetime64[m]").astype("datetime64[ns]"),
                           tz="UTC")  # fmt: skip
    got = [ny_clock(t) for t in idx]
    assert [g[0] for g in got] == list(ny_open(idx))
    assert [g[1] for g in got] == list(minutes_from_rollover(idx))


def test_signal_to_side():
    assert list(signal_to_side(["BUY", "sell", " Hold ", None])) == [1, -1, 0, 0]
    assert list(signal_to_side([2.5, -0.1, 0, np.nan])) == [1, -1, 0, 0]
    with pytest.raises(ValueError, match="BUY/SELL/HOLD"):
        signal_to_side(["BUY", "LONG"])


def test_volatility_ratio_is_causal_and_centred_on_one():
    rng = np.random.default_rng(1)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-4, 5000)))
    vr = volatility_ratio(close, short=30, long=1000)
    assert np.isnan(vr[:30]).all()
    assert np.nanmedian(vr[1500:]) == pytest.approx(1.0, abs=0.1)
    moved = close.copy()
    moved[3000:] *= np.exp(np.cumsum(rng.normal(0, 5e-4, 2000)))
    np.testing.assert_array_equal(volatility_ratio(moved, 30, 1000)[:3000], vr[:3000])
