"""Execution engine on hand-built price paths: timing, exits, costs, sizing, portfolio."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bqx.backtest import BacktestConfig, BacktestError, run
from tests.backtest.helpers import make_bars, make_signals

CAP = 100_000.0
# no exits but the signal ones: isolates the rule under test
PLAIN = {"take_profit": None, "stop_loss": None, "horizon": None}


def test_known_sequence_of_trades_gives_hand_computed_pnl_including_spread():
    # flat path with three levels; spread 2 pips everywhere -> half spread 0.0001 per fill
    opens = [1.00] * 6 + [1.01] * 3 + [1.02] * 3
    closes = [*opens[:-1], 1.01]
    bars = make_bars(opens, closes=closes)
    sig = make_signals(bars, {1: +1, 5: -1, 8: -1})
    res = run(bars, sig, BacktestConfig(**PLAIN))
    t = res.trades
    assert len(t) == 2
    # trade 1: BUY at bar 1 -> long at bar 2 open (1.00 + 0.0001); SELL at bar 5 -> exit bar 6
    # open 1.01 - 0.0001. Notional = capital.
    t1 = t.iloc[0]
    assert (t1["side"], t1["exit_reason"]) == (1, "signal")
    assert t1["entry_ts"] == bars["ts"][2] and t1["exit_ts"] == bars["ts"][6]
    assert t1["entry_price"] == pytest.approx(1.0001) and t1["exit_price"] == pytest.approx(1.0099)
    units1 = CAP / 1.0001
    assert t1["gross_pnl"] == pytest.approx(units1 * 0.01, rel=1e-12)
    assert t1["spread_cost"] == pytest.approx(units1 * 0.0002, rel=1e-12)
    assert t1["net_pnl"] == pytest.approx(units1 * (1.0099 - 1.0001), rel=1e-12)
    # the signal at bar 5 was consumed by the exit; SELL at bar 8 -> short at bar 9 open 1.02
    # (sold at the bid 1.0199), still open at the end: closed at the last close 1.01 (+0.0001)
    t2 = t.iloc[1]
    assert (t2["side"], t2["exit_reason"]) == (-1, "end")
    assert t2["entry_ts"] == bars["ts"][9] and t2["exit_ts"] == bars["ts"][11]
    balance = CAP + units1 * (1.0099 - 1.0001)
    assert t2["size"] == pytest.approx(balance, rel=1e-12)
    units2 = balance / 1.0199
    assert t2["net_pnl"] == pytest.approx(units2 * (1.0199 - 1.0101), rel=1e-12)
    assert res.equity["equity"].iloc[-1] == pytest.approx(balance + t2["net_pnl"], rel=1e-12)


def test_mark_to_market_equity_values_open_position_at_close_net_of_entry_costs():
    bars = make_bars([1.0, 1.0, 1.0, 1.0, 1.0], closes=[1.0, 1.0, 1.003, 1.001, 1.0])
    res = run(bars, make_signals(bars, {0: 1}), BacktestConfig(**PLAIN))
    units = CAP / 1.0001
    eq = res.equity["equity"].to_numpy()
    assert eq[0] == CAP  # flat until the entry bar
    assert eq[1] == pytest.approx(CAP + units * (1.0 - 1.0) - units * 0.0001)
    assert eq[2] == pytest.approx(CAP + units * 0.003 - units * 0.0001)
    assert eq[4] == pytest.approx(CAP + units * (1.0 - 0.0001 - 1.0001))  # closed at the end
    assert res.equity["exposure"].iloc[1] == pytest.approx(CAP)


def test_reverse_on_opposite_signal_enters_at_the_same_open():
    bars = make_bars([1.0] * 4 + [1.01] * 4)
    res = run(bars, make_signals(bars, {1: 1, 4: -1}), BacktestConfig(**PLAIN, reverse=True))
    t = res.trades
    assert list(t["side"]) == [1, -1]
    assert t["exit_ts"][0] == t["entry_ts"][1] == bars["ts"][5]
    assert t["exit_mid"][0] == t["entry_mid"][1] == 1.01


def test_persistent_signal_does_not_reopen_on_consumed_bars():
    # BUY on every bar, time-out after 2 bars: entries at 1, then the next signal bar after
    # the exit bar (3) -> entry at 4, exit at 6, entry at 7 ...
    bars = make_bars([1.0] * 10)
    res = run(
        bars,
        make_signals(bars, [1] * 10),
        BacktestConfig(take_profit=None, stop_loss=None, horizon=2),
    )
    t = res.trades
    assert list(t["entry_ts"]) == list(bars["ts"][[1, 4, 7]])
    assert list(t["exit_reason"]) == ["timeout"] * 3
    assert list(t["bars_held"]) == [2, 2, 2]


def test_signal_on_the_last_bar_is_ignored():
    bars = make_bars([1.0] * 5)
    res = run(bars, make_signals(bars, {4: 1}), BacktestConfig())
    assert res.trades.empty and res.equity["equity"].eq(CAP).all()


def _one_trade(opens, highs, lows, closes=None, side=1, **cfg):
    bars = make_bars(opens, highs, lows, closes, spread=0.0)
    kw = {"take_profit": 0.01, "stop_loss": 0.005, "horizon": None, **cfg}
    res = run(bars, make_signals(bars, {0: side}), BacktestConfig(**kw))
    return bars, res.trades.iloc[0]


def test_take_profit_exits_at_the_level_on_the_first_bar_that_reaches_it():
    opens = [1.0, 1.0, 1.004, 1.006, 1.0]
    highs = [1.0, 1.005, 1.008, 1.0105, 1.0]  # bar 3 reaches 1.01
    lows = [1.0, 0.999, 1.003, 1.005, 1.0]
    bars, t = _one_trade(opens, highs, lows)
    assert t["exit_reason"] == "take_profit" and t["exit_ts"] == bars["ts"][3]
    assert t["exit_mid"] == pytest.approx(1.01) and t["return"] == pytest.approx(0.01)


def test_stop_loss_exits_at_the_level():
    bars, t = _one_trade([1, 1, 1, 1], [1, 1.001, 1.002, 1], [1, 0.998, 0.9949, 1])
    assert t["exit_reason"] == "stop_loss" and t["exit_ts"] == bars["ts"][2]
    assert t["exit_mid"] == pytest.approx(0.995) and t["return"] == pytest.approx(-0.005)


def test_bar_hitting_both_levels_is_resolved_as_the_stop():
    bars, t = _one_trade([1, 1, 1, 1], [1, 1.001, 1.02, 1], [1, 0.999, 0.99, 1])
    assert t["exit_reason"] == "stop_loss" and t["exit_ts"] == bars["ts"][2]
    assert t["exit_mid"] == pytest.approx(0.995)


def test_gap_through_the_stop_fills_at_the_open():
    bars, t = _one_trade([1, 1, 0.99, 0.99], [1, 1.001, 0.992, 1], [1, 0.999, 0.985, 1])
    assert t["exit_reason"] == "stop_loss" and t["exit_ts"] == bars["ts"][2]
    assert t["exit_mid"] == 0.99  # worse than the level 0.995


def test_gap_through_take_profit_fills_at_the_open():
    _, t = _one_trade([1, 1, 1.02, 1.02], [1, 1.001, 1.03, 1], [1, 0.999, 1.015, 1])
    assert t["exit_reason"] == "take_profit" and t["exit_mid"] == 1.02


def test_levels_are_checked_on_the_entry_bar_itself():
    bars, t = _one_trade([1, 1, 1], [1, 1.011, 1], [1, 1.0, 1])
    assert t["exit_reason"] == "take_profit" and t["exit_ts"] == t["entry_ts"] == bars["ts"][1]
    assert t["bars_held"] == 0


def test_short_take_profit_and_stop_are_mirrored():
    bars, t = _one_trade([1, 1, 1, 1], [1, 1.001, 1.0, 1], [1, 0.999, 0.9899, 1], side=-1)
    assert t["exit_reason"] == "take_profit" and t["exit_mid"] == pytest.approx(0.99)
    assert t["return"] == pytest.approx(0.01)
    bars, t = _one_trade([1, 1, 1, 1], [1, 1.0051, 1.0, 1], [1, 0.999, 0.999, 1], side=-1)
    assert t["exit_reason"] == "stop_loss" and t["exit_ts"] == bars["ts"][1]
    assert t["exit_mid"] == pytest.approx(1.005)


def test_time_out_exits_at_the_open_horizon_bars_after_entry():
    opens = [1.0, 1.0, 1.001, 1.002, 1.003, 1.004, 1.005]
    bars, t = _one_trade(opens, None, None, horizon=3)
    assert t["exit_reason"] == "timeout" and t["bars_held"] == 3
    assert t["exit_ts"] == bars["ts"][4] and t["exit_mid"] == 1.003


def test_opposite_signal_exit_takes_precedence_only_when_it_comes_first():
    bars = make_bars([1.0] * 10, spread=0.0)
    cfg = BacktestConfig(take_profit=None, stop_loss=None, horizon=4)
    t = run(bars, make_signals(bars, {0: 1, 2: -1}), cfg).trades.iloc[0]
    assert t["exit_reason"] == "signal" and t["exit_ts"] == bars["ts"][3]
    t = run(bars, make_signals(bars, {0: 1, 6: -1}), cfg).trades.iloc[0]
    assert t["exit_reason"] == "timeout" and t["exit_ts"] == bars["ts"][5]


def test_slippage_and_commission_are_charged_per_fill_and_reported_separately():
    bars = make_bars([1.0, 1.0, 1.0, 1.01, 1.01], spread=0.0002)
    cfg = BacktestConfig(**PLAIN, slippage_pips=0.5, commission=25e-6)  # USD 25 / million / side
    t = run(bars, make_signals(bars, {0: 1, 2: -1}), cfg).trades.iloc[0]
    fill_in = 1.0 + 0.0001 + 0.00005
    units = CAP / fill_in
    assert t["entry_price"] == pytest.approx(fill_in)
    assert t["exit_price"] == pytest.approx(1.01 - 0.0001 - 0.00005)
    assert t["spread_cost"] == pytest.approx(units * 0.0002)
    assert t["slippage_cost"] == pytest.approx(units * 0.0001)
    assert t["commission"] == pytest.approx(25e-6 * units * (1.0 + 1.01))
    assert t["gross_pnl"] == pytest.approx(units * 0.01)
    assert t["net_pnl"] == pytest.approx(
        t["gross_pnl"] - t["spread_cost"] - t["slippage_cost"] - t["commission"]
    )


def test_fixed_spread_in_pips_overrides_the_data_and_uses_the_pair_pip():
    bars = make_bars([150.0, 150.0, 150.0, 151.0], pair="USDJPY", spread=0.05)
    cfg = BacktestConfig(**PLAIN, spread_pips=1.0)
    t = run(bars, make_signals(bars, {0: 1}), cfg).trades.iloc[0]
    assert t["entry_price"] == pytest.approx(150.005)  # half of 1 pip = 0.005 for JPY pairs


def test_missing_spreads_use_the_pair_median_or_fail_clearly():
    bars = make_bars([1.0] * 5, spread=0.0002)
    bars.loc[1, "spread"] = np.nan
    res = run(bars, make_signals(bars, {0: 1}), BacktestConfig(**PLAIN))
    assert res.trades["entry_price"][0] == pytest.approx(1.0001)
    assert any("median spread" in w for w in res.warnings)
    with pytest.raises(BacktestError, match="spread"):
        run(make_bars([1.0] * 5, spread=None), make_signals(bars, {0: 1}), BacktestConfig())


def test_signals_accept_names_numbers_and_predictions():
    bars = make_bars([1.0] * 6)
    by_name = make_signals(bars, {1: 1}).assign(
        signal=lambda d: d["signal"].map({1: "BUY", 0: "HOLD"})
    )
    by_num = make_signals(bars, {1: 1})
    by_pred = by_num.drop(columns="signal").assign(prediction=[0, 0.001, 0, 0, 0, 0])
    tr = [run(bars, s, BacktestConfig(**PLAIN)).trades for s in (by_name, by_num, by_pred)]
    assert all(len(t) == 1 and t["entry_ts"][0] == bars["ts"][2] for t in tr)


def test_unmatched_and_duplicate_signal_rows():
    bars = make_bars([1.0] * 6)
    sig = make_signals(bars, {1: 1})
    extra = pd.DataFrame(
        {"pair": ["EURUSD"], "ts": [pd.Timestamp("2030-01-01", tz="UTC")], "signal": [1]}
    )
    res = run(bars, pd.concat([sig, extra]), BacktestConfig())
    assert any("match no bar" in w for w in res.warnings)
    with pytest.raises(BacktestError, match="duplicate"):
        run(bars, pd.concat([sig, sig]), BacktestConfig())


# --------------------------------------------------------------------------------------
# no lookahead
# --------------------------------------------------------------------------------------
def _random_path(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    o = np.r_[1.1, c[:-1]] * np.exp(rng.normal(0, 0.0002, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.0006, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.0006, n)))
    return make_bars(o, h, lo, c, spread=0.00015)


def test_perturbing_bars_at_or_before_the_signal_bar_does_not_change_the_trade():
    bars = _random_path(200, 1)
    s = 120
    cfg = BacktestConfig(take_profit=0.003, stop_loss=0.002, horizon=30)
    ref = run(bars, make_signals(bars, {s: 1}), cfg).trades
    rng = np.random.default_rng(2)
    moved = bars.copy()
    k = np.arange(s + 1)  # bars up to and including the signal bar, its open and close too
    f = np.exp(rng.normal(0, 0.01, len(k)))
    for col in ("open", "high", "low", "close"):
        moved.loc[k, col] = moved.loc[k, col].to_numpy() * f
    got = run(moved, make_signals(moved, {s: 1}), cfg).trades
    assert got["entry_ts"][0] == bars["ts"][s + 1]
    cols = ["entry_ts", "entry_price", "exit_ts", "exit_price", "exit_reason", "net_pnl"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])


def test_future_bars_do_not_change_past_trades():
    bars = _random_path(600, 3)
    sides = np.random.default_rng(4).choice([-1, 0, 0, 1], size=600)
    cfg = BacktestConfig(take_profit=0.004, stop_loss=0.002, horizon=20, reverse=True)
    full = run(bars, make_signals(bars, sides), cfg).trades
    cut = 400
    part = run(bars.iloc[:cut], make_signals(bars.iloc[:cut], sides[:cut]), cfg).trades
    done = part[part["exit_ts"] < bars["ts"][cut - 1]]
    assert len(done) > 10
    pd.testing.assert_frame_equal(done, full.iloc[: len(done)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    reverse=st.booleans(),
    horizon=st.sampled_from([None, 1, 5, 30]),
    tp=st.sampled_from([None, 0.001, 0.01]),
    sl=st.sampled_from([None, 0.0005, 0.005]),
)
def test_trade_invariants_on_random_paths(seed, reverse, horizon, tp, sl):
    bars = _random_path(300, seed)
    sides = np.random.default_rng(seed + 1).choice([-1, 0, 0, 0, 1], size=300)
    cfg = BacktestConfig(take_profit=tp, stop_loss=sl, horizon=horizon, reverse=reverse)
    t = run(bars, make_signals(bars, sides), cfg).trades
    ts = bars["ts"]
    pos = {v: i for i, v in enumerate(ts)}
    for r in t.itertuples():
        e, x, s_bar = pos[r.entry_ts], pos[r.exit_ts], pos[r.signal_ts]
        assert e == s_bar + 1  # filled at the open right after the signal bar
        assert sides[s_bar] == r.side
        assert x >= e and (horizon is None or x - e <= horizon)
        assert r.net_pnl == pytest.approx(
            r.gross_pnl - r.spread_cost - r.slippage_cost - r.commission
        )
    # one position at a time: each trade starts at or after the previous exit
    assert (t["entry_ts"].iloc[1:].to_numpy() >= t["exit_ts"].iloc[:-1].to_numpy()).all()


# --------------------------------------------------------------------------------------
# sizing and portfolio
# --------------------------------------------------------------------------------------
def _kelly_expected(returns: np.ndarray, kf: float) -> float:
    w = returns > 0
    g, loss = returns[w].mean(), -returns[~w].mean()
    p = w.mean()
    return kf * (p - (1 - p) / (g / loss)) / loss


def test_kelly_sizing_uses_only_trades_closed_before_the_entry():
    bars = _random_path(3000, 7)
    sides = np.random.default_rng(8).choice([-1, 0, 0, 0, 0, 1], size=3000)
    cfg = BacktestConfig(
        take_profit=0.002, stop_loss=0.002, horizon=15, sizing="kelly", kelly_fraction=0.05,
        kelly_min_trades=5, max_leverage=50.0, fraction=1.0,
    )  # fmt: skip
    t = run(bars, make_signals(bars, sides), cfg).trades
    assert len(t) > 40
    balance = CAP
    for i, r in t.iterrows():
        past = t[t["exit_ts"] < r["entry_ts"]]
        balance = CAP + past["net_pnl"].sum()
        if len(past) < 5:
            expected = 1.0
        else:
            expected = min(max(_kelly_expected(past["return"].to_numpy(), 0.05), 0.0), 50.0)
        assert r["size"] == pytest.approx(expected * balance, rel=1e-9), i
    # changing what happens after trade k cannot change the sizes up to k
    k = len(t) // 2
    cut = bars["ts"].searchsorted(t["entry_ts"][k]) + 1
    moved = bars.copy()
    moved.loc[cut:, ["open", "high", "low", "close"]] *= 1.03
    t2 = run(moved, make_signals(moved, sides), cfg).trades
    np.testing.assert_allclose(t2["size"][: k + 1], t["size"][: k + 1], rtol=1e-12)


def test_leverage_cap_scales_down_new_entries_across_pairs():
    pairs = ["EURUSD", "GBPUSD", "AUDUSD"]
    bars = pd.concat([make_bars([1.0] * 8, pair=p, spread=0.0) for p in pairs], ignore_index=True)
    sig = pd.concat([make_signals(bars[bars["pair"] == p], {1: 1}) for p in pairs])
    res = run(bars, sig, BacktestConfig(**PLAIN, fraction=1.0, max_leverage=2.5))
    sizes = res.trades.sort_values("pair")["size"].to_numpy()
    # entries at the same instant are served in the order pairs appear in the bars
    by_pair = dict(zip(res.trades["pair"], res.trades["size"], strict=True))
    assert by_pair == pytest.approx({"EURUSD": CAP, "GBPUSD": CAP, "AUDUSD": 0.5 * CAP})
    assert sizes.sum() == pytest.approx(2.5 * CAP)
    assert (res.equity["exposure"] <= 2.5 * CAP + 1e-6).all()
    # zero room: the entry is kept with size 0 and does not trade
    res = run(bars, sig, BacktestConfig(**PLAIN, fraction=1.0, max_leverage=2.0))
    assert sorted(res.trades["size"]) == pytest.approx([0.0, CAP, CAP])


def test_portfolio_equity_is_capital_plus_pair_pnls_on_the_union_timeline():
    a = make_bars([1.0, 1.0, 1.01, 1.02, 1.03, 1.03], pair="EURUSD")
    b = make_bars(
        [150.0, 150.5, 151.0, 151.0], pair="USDJPY", spread=0.02, start="2024-01-02 00:02"
    )
    bars = pd.concat([a, b], ignore_index=True)
    sig = pd.concat([make_signals(a, {0: 1}), make_signals(b, {0: -1})])
    res = run(bars, sig, BacktestConfig(**PLAIN))
    eq = res.equity
    assert len(eq) == 6  # union of the two grids
    np.testing.assert_allclose(eq["equity"], CAP + eq["pnl_EURUSD"] + eq["pnl_USDJPY"])
    assert (eq["pnl_USDJPY"].iloc[:2] == 0).all()  # before its first bar
    assert eq["equity"].iloc[-1] == pytest.approx(CAP + res.trades["net_pnl"].sum())


def test_config_is_validated():
    with pytest.raises(BacktestError):
        BacktestConfig(take_profit=1.5)
    with pytest.raises(BacktestError):
        BacktestConfig(horizon=0)
    with pytest.raises(BacktestError):
        BacktestConfig(sizing="martingale")  # type: ignore[arg-type]


def test_single_pair_fast_sizing_matches_the_event_loop():
    bars = _random_path(2000, 11)
    sides = np.random.default_rng(12).choice([-1, 0, 0, 1], size=2000)
    kw = {"take_profit": 0.003, "stop_loss": 0.002, "horizon": 20, "reverse": True, "fraction": 2.0}
    fast = run(bars, make_signals(bars, sides), BacktestConfig(**kw)).trades
    # Kelly that never leaves its fixed-fraction warm-up takes the general event loop
    loop_cfg = BacktestConfig(**kw, sizing="kelly", kelly_min_trades=10**9)
    loop = run(bars, make_signals(bars, sides), loop_cfg).trades
    assert len(fast) > 100
    np.testing.assert_allclose(fast["size"], loop["size"], rtol=1e-10)
    np.testing.assert_allclose(fast["leverage"], loop["leverage"], rtol=1e-10)


def test_max_notional_caps_the_trade_its_signal_row_opens():
    """The per-trade cap of `--signals` (paper trading logs the risk manager's allowed
    quantity there): the trade opened by a capped row gets min(sizing, cap); a row that
    opens no trade, or has no cap (NaN), changes nothing; a negative cap is refused."""
    bars = _random_path(600, 5)
    sides = np.random.default_rng(6).choice([-1, 0, 0, 0, 1], size=600)
    kw = {"take_profit": 0.003, "stop_loss": 0.002, "horizon": 20, "fraction": 1.0}
    sig = make_signals(bars, sides)
    base = run(bars, sig, BacktestConfig(**kw)).trades
    assert len(base) > 20
    # an all-NaN column is no cap: identical, including the single-pair fast path
    nocap = run(bars, sig.assign(max_notional=np.nan), BacktestConfig(**kw)).trades
    pd.testing.assert_frame_equal(nocap, base)
    # cap every other trade's signal row at 30 % of capital; a huge cap elsewhere
    cap = np.full(len(sig), 1e15)
    sig_ts = pd.DatetimeIndex(base["signal_ts"])
    pos = sig.reset_index(drop=True).index[sig["ts"].isin(sig_ts[::2])]
    cap[pos] = 0.3 * CAP
    got = run(bars, sig.assign(max_notional=cap), BacktestConfig(**kw)).trades
    # the cap changes money, never the timing of trades
    pd.testing.assert_frame_equal(
        got[["pair", "side", "entry_ts", "exit_ts", "exit_reason"]],
        base[["pair", "side", "entry_ts", "exit_ts", "exit_reason"]],
    )
    capped = got["signal_ts"].isin(sig_ts[::2]).to_numpy()
    assert capped.sum() == len(sig_ts[::2])
    np.testing.assert_allclose(got["size"][capped], 0.3 * CAP)
    # uncapped trades keep fixed-fraction sizing on the (changed) balance
    bal = CAP + np.r_[0.0, np.cumsum(got["net_pnl"].to_numpy())[:-1]]
    np.testing.assert_allclose(got["size"][~capped], bal[~capped], rtol=1e-12)
    np.testing.assert_allclose(got["net_pnl"], got["size"] * got["return"], rtol=1e-12)
    # a zero cap keeps the trade with size 0 (it still occupies the pair)
    zero = run(bars, sig.assign(max_notional=0.0), BacktestConfig(**kw)).trades
    assert len(zero) == len(base) and (zero["size"] == 0).all()
    with pytest.raises(BacktestError, match="max_notional"):
        run(bars, sig.assign(max_notional=-1.0), BacktestConfig(**kw))
