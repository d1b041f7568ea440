"""The market simulator: triangles, calendar, determinism, realism and the documented oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.calendar import minutes_from_rollover, ny_open, surely_closed
from bqx.data.simulator import (
    generate,
    kappa_for_strength,
    oracle_prediction,
    realized_target,
    theoretical_r2,
)
from bqx.universe import pip_size, triangles


@pytest.fixture(scope="module")
def sim():
    return generate(days=10, seed=5, start="2024-07-03", signal_strength=0.1)


def test_triangles_hold_to_float_precision(sim):
    w = sim.bars.pivot(index="ts", columns="pair", values="close")
    for ab, bc, ac in triangles():
        err = np.max(np.abs(w[ab] * w[bc] / w[ac] - 1.0))
        assert err < 1e-13, (ab, bc, ac, err)


def test_no_bars_when_the_market_is_closed(sim):
    ts = pd.DatetimeIndex(sim.bars["ts"].unique())
    assert ny_open(ts).all() and not surely_closed(ts).any()
    # a whole weekend is absent: Friday 17:00 to Sunday 17:00 New York
    sat = ts[(ts.tz_convert("America/New_York").day_of_week == 5)]
    assert len(sat) == 0
    assert ts.min() >= pd.Timestamp("2024-07-03", tz="UTC")


def test_same_seed_same_data_and_pairs_do_not_interfere():
    a = generate(days=3, seed=9, pairs="EURUSD,USDJPY").bars
    b = generate(days=3, seed=9, pairs="EURUSD,USDJPY").bars
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = generate(days=3, seed=9, pairs="USDJPY").bars
    pd.testing.assert_frame_equal(a[a.pair == "USDJPY"].reset_index(drop=True), c, check_exact=True)
    d = generate(days=3, seed=10, pairs="USDJPY").bars
    assert not np.array_equal(c["close"].to_numpy(), d["close"].to_numpy())


def test_bars_are_realistic(sim):
    b = sim.bars
    assert (b["high"] >= b[["open", "close", "low"]].max(axis=1)).all()
    assert (b["low"] <= b[["open", "close"]].min(axis=1)).all()
    eur = b[b.pair == "EURUSD"]
    assert 0.9 < eur["close"].iloc[0] < 1.3 and 100 < b[b.pair == "USDJPY"]["close"].iloc[0] < 200
    # spreads: realistic pips, wider around the daily rollover than mid-session
    sp = eur["spread"] / pip_size("EURUSD")
    assert 0.3 < sp.median() < 2.0
    near = np.abs(minutes_from_rollover(eur["ts"])) <= 5
    assert sp[near].median() > 2 * sp[~near].median()
    # tick volume rises with volatility
    r = np.abs(np.diff(np.log(eur["close"].to_numpy())))
    v = eur["volume"].to_numpy()[1:]
    assert np.corrcoef(r, v)[0, 1] > 0.2
    # annualised volatility of a major in a realistic range, measured on hourly returns (with
    # a predictable component, shocks are scaled so that long-horizon volatility stays real)
    hourly = np.log(eur["close"].to_numpy()[::60])
    vol = np.std(np.diff(hourly)) * np.sqrt(260 * 24)
    assert 0.03 < vol < 0.2, vol


def test_oracle_r2_is_documented_and_recovered():
    assert theoretical_r2(0.0) == 0.0
    for strength in (0.05, 0.2):
        assert abs(theoretical_r2(kappa_for_strength(strength)) - strength) < 1e-9
    res = generate(days=40, seed=2, pairs="EURUSD,GBPJPY", signal_strength=0.2)
    # empirical oracle R² close to the requested strength (stochastic volatility moves it a bit)
    assert all(0.1 < v < 0.3 for v in res.oracle_r2.values()), res.oracle_r2
    close = res.bars[res.bars.pair == "EURUSD"]["close"].to_numpy()
    yhat = oracle_prediction(close, 0.2)
    y = realized_target(close)
    ok = np.isfinite(y)
    r2 = 1 - np.sum((y[ok] - yhat[ok]) ** 2) / np.sum((y[ok] - y[ok].mean()) ** 2)
    assert abs(r2 - res.oracle_r2["EURUSD"]) < 1e-12
    zero = generate(days=5, seed=2, pairs="EURUSD")
    assert zero.oracle_r2 == {} and zero.kappa == 0.0


def test_signal_cycle_rotates_the_predictable_component() -> None:
    """With ``signal_cycle_days`` the slope of the realised target on the momentum of past
    returns (an EMA, observable at t) is positive where the coefficient is near +1 and
    negative where it is near -1; the same seed without the option keeps it positive in
    both (the control)."""
    from scipy.signal import lfilter

    from bqx.data.simulator import generate, realized_target, signal_coefficient

    def slopes(cycle: float | None) -> list[float]:
        r = generate(days=28, pairs=["EURUSD"], seed=1, signal_strength=0.1,
                     signal_cycle_days=cycle)  # fmt: skip
        close = r.bars["close"].to_numpy()
        ts = pd.DatetimeIndex(r.bars["ts"])
        lp = np.log(close)
        ret = np.diff(lp, prepend=lp[0])
        x = lfilter([1 / 120], [1, -(1 - 1 / 120)], ret)  # EMA of returns, span 239
        y = realized_target(close)
        k = signal_coefficient(ts, "2024-01-01", 28.0)
        out = []
        for m in (k > 0.7, k < -0.7):
            m = m & np.isfinite(y)
            out.append(float(np.dot(x[m], y[m]) / np.dot(x[m], x[m])))
        return out

    early, late = slopes(28.0)
    assert early > 5 and late < -5, (early, late)
    c_early, c_late = slopes(None)
    assert c_early > 5 and c_late > 5, (c_early, c_late)
    ix = pd.DatetimeIndex(["2024-01-01", "2024-01-15"], tz="UTC")
    assert np.allclose(signal_coefficient(ix, "2024-01-01", 28.0), [1.0, -1.0])
    assert np.allclose(signal_coefficient(ix, "2024-01-01", 28.0, low=0.0), [1.0, 0.0])


def test_signal_span_is_additive_and_its_oracle_is_exact() -> None:
    """``signal_span`` (the demo's shorter-lived momentum): the default span gives the same
    bytes as before, the documented strength holds for the new span in theory and the oracle
    computed with the same span reproduces the reported empirical oracle R² exactly; a
    strength that the span cannot reach is refused."""
    a = generate(days=2, seed=3, pairs="EURUSD", signal_strength=0.2).bars
    b = generate(days=2, seed=3, pairs="EURUSD", signal_strength=0.2, signal_span=240).bars
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    k = kappa_for_strength(0.3, 120)
    assert k > kappa_for_strength(0.3)  # a shorter-lived drift needs a larger gain
    assert abs(theoretical_r2(k, span=120) - 0.3) < 1e-9
    res = generate(days=20, seed=2, pairs="EURUSD", signal_strength=0.3, signal_span=120)
    close = res.bars["close"].to_numpy()
    y = realized_target(close)
    ok = np.isfinite(y)
    for span, exact in ((120, True), (240, False)):
        yhat = oracle_prediction(close, 0.3, span=span)
        r2 = 1 - np.sum((y[ok] - yhat[ok]) ** 2) / np.sum((y[ok] - y[ok].mean()) ** 2)
        assert (abs(r2 - res.oracle_r2["EURUSD"]) < 1e-12) == exact, (span, r2)
    assert 0.15 < res.oracle_r2["EURUSD"] < 0.45, res.oracle_r2
    with pytest.raises(ValueError, match="not reachable"):
        kappa_for_strength(0.3, 90)


def test_cli_generate_passes_the_signal_span_through() -> None:
    """`bqx data generate --signal-span` (the demo's market) reaches the simulator: the kappa it
    reports is the one solved for that span, and an unreachable strength is an error."""
    import json

    from typer.testing import CliRunner

    from bqx.cli import app

    res = CliRunner().invoke(app, ["data", "generate", "--days", "1", "--pairs", "EURUSD",
                                   "--signal-strength", "0.25", "--signal-span", "90", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["signal_span"] == 90
    assert abs(out["kappa"] - kappa_for_strength(0.25, 90)) < 1e-12
    assert out["kappa"] > 2 * kappa_for_strength(0.25)
    bad = CliRunner().invoke(app, ["data", "generate", "--days", "1", "--pairs", "EURUSD",
                                   "--signal-strength", "0.3", "--signal-span", "90"])  # fmt: skip
    text = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "--signal-span" in text and "not reachable" in text, text
