"""The execution engine: trade a given signal series on bars, with costs, sizing and a portfolio.

Timing (no lookahead by construction)
-------------------------------------
A signal stamped at bar ``t`` is taken to be decided at the *close* of bar ``t`` (features at
``t`` use bars <= t), so it is executed at the **open of the next bar** of that pair, ``t+1``.
Signals are level-triggered: while flat, any BUY/SELL bar opens a position at the next open.
A signal bar can open at most one trade: after an exit during bar ``x`` the next entry uses
signals from bar ``x`` on (so it fills at ``x+1`` or later), except a reversal (below).

Exits, whichever comes first:

* **take-profit / stop-loss** at ``entry_mid * (1 +- take_profit)`` and
  ``entry_mid * (1 -+ stop_loss)``, checked on mid high/low from the entry bar on (the
  entry bar's range is after its open, so it is fair game). If one bar reaches both levels
  the **stop** is assumed (conservative); a bar that *opens* beyond a level (a gap) fills at
  its open, not at the level;
* **opposite signal** at bar ``t >= entry bar``: exit at the open of ``t+1``; with
  ``reverse=True`` the opposite position opens at that same open;
* **time-out** ``horizon`` bars after entry: exit at the open of bar ``entry + horizon``;
* **end of data**: a position still open is closed at the last close (reason ``end``).

Costs (each reported separately, per fill, so a round trip pays each twice)
-------------------------------------------------------------------------
* half the bar's bid-ask ``spread`` (price units, from the data) at the fill bar, or half of
  ``spread_pips`` when that is set (also the fallback where the data has no spread);
* ``slippage_pips`` against the trade;
* ``commission``: a fraction of the traded value (mid price x units), e.g. USD 20 per
  million per side is ``2e-5``.

Money (the P&L convention)
--------------------------
A trade of notional ``N`` (account currency) buys ``N / entry_fill`` units. Its P&L is
computed in the quote currency and taken as the same fraction of ``N`` in the account
currency::

    net / N = side * (exit_mid - entry_mid) / entry_fill              gross
              - (half_spread_in + half_spread_out) / entry_fill         spread
              - 2 * slippage / entry_fill                               slippage
              - commission * (entry_mid + exit_mid) / entry_fill        commission
            = side * (exit_fill - entry_fill) / entry_fill - commission term

which ignores the (second-order) move of the quote currency against the account currency
during the trade. Equity is marked to market at every bar close: realised P&L plus open
positions valued at the close mid, net of the entry costs already paid (exit costs are not
anticipated, as in backtesting.py).

Sizing and portfolio
--------------------
One position per pair. ``sizing="fixed"``: notional = ``fraction`` x balance, where balance
is the capital plus realised P&L of trades closed *before* the entry (exits at the same open
come first, intrabar exits of that bar after). ``sizing="kelly"``: from the pair's trades
closed before the entry (never later ones): win rate ``W``, mean winning and losing net
returns ``G`` and ``L``; Kelly's ``f* = W - (1 - W) / (G / L)`` is the fraction of equity to
lose on a losing trade, so the notional is ``kelly_fraction * f* / L`` of balance, clipped
to ``[0, max_leverage]``; before ``kelly_min_trades`` trades it sizes like ``fixed``. Trades
sized to zero (negative Kelly, or no leverage room) are kept with ``size = 0`` and still
count in the pair's statistics, so a strategy can recover. The total open notional never
exceeds ``max_leverage`` x balance: a new entry is scaled down to fit (entries at the same
instant are served in pair order). The position of a trade scaled to zero still occupies its
pair until its exit, which keeps the trade timing independent of money management.

A per-trade cap: when the signals have a ``max_notional`` column (account currency; empty
= no cap), the trade a signal row opens gets at most that notional, after the sizing rule
and the leverage room. Paper trading logs the risk manager's allowed quantity there, so a
backtest of its logged decisions sizes exactly as the paper account did.

Speed: the per-trade exit search is a numpy scan over the bars after the entry; there is no
Python loop per bar. See ``benchmarks/bench_backtest_engine.py``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bqx.calendar import to_utc_index
from bqx.errors import BqxError
from bqx.universe import normalize_pair, pip_size

if TYPE_CHECKING:
    from bqx.config import SignalSettings

__all__ = [
    "EXIT_REASONS",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "run",
]

#: Exit reasons as written to ``trades.csv``.
EXIT_REASONS: tuple[str, ...] = ("take_profit", "stop_loss", "signal", "timeout", "end")
_TP, _SL, _SIG, _TO, _END = range(5)
# phases of an instant: exits at the open, entries at the open, intrabar exits, close exits
_PH_OPEN_EXIT, _PH_ENTRY, _PH_INTRABAR, _PH_CLOSE = 0, 1, 2, 3


class BacktestError(BqxError):
    """The inputs cannot be backtested as given (missing columns, no spread, ...)."""


@dataclass(frozen=True)
class BacktestConfig:
    """Execution rules. Fractions are of price (1 % = 0.01); windows count bars.

    ``take_profit``/``stop_loss``/``horizon`` set to ``None`` disable that exit.
    """

    #: Take-profit distance from the entry mid, fraction of price (0.01 = 1 %).
    take_profit: float | None = 0.01
    #: Stop-loss distance from the entry mid, fraction of price.
    stop_loss: float | None = 0.005
    #: Time-out: exit at the open ``horizon`` bars after the entry bar.
    horizon: int | None = 60
    #: On an opposite signal, open the opposite position at the same open.
    reverse: bool = False
    #: Fixed bid-ask spread in pips; ``None`` uses the bars' ``spread`` column.
    spread_pips: float | None = None
    #: Adverse slippage per fill, pips.
    slippage_pips: float = 0.0
    #: Commission per side, fraction of traded value (USD 20 per million = 2e-5).
    commission: float = 0.0
    #: Starting capital, account currency.
    capital: float = 100_000.0
    #: ``"fixed"`` fraction of balance, or fractional ``"kelly"`` from past trades.
    sizing: Literal["fixed", "kelly"] = "fixed"
    #: Notional per position / balance (fixed sizing, and Kelly's warm-up).
    fraction: float = 1.0
    #: Multiplier on the full Kelly leverage (0.25 = quarter Kelly).
    kelly_fraction: float = 0.25
    #: Closed trades of a pair needed before Kelly sizing replaces ``fraction``.
    kelly_min_trades: int = 30
    #: Cap on total open notional / balance across all pairs.
    max_leverage: float = 10.0

    def __post_init__(self) -> None:
        for name in ("take_profit", "stop_loss"):
            v = getattr(self, name)
            if v is not None and not (0 < v < 1):
                raise BacktestError(f"{name} must be a fraction in (0, 1) or None, got {v}")
        if self.horizon is not None and self.horizon < 1:
            raise BacktestError(f"horizon must be >= 1 bar or None, got {self.horizon}")
        if self.spread_pips is not None and self.spread_pips < 0:
            raise BacktestError("spread_pips must be >= 0")
        if self.slippage_pips < 0 or self.commission < 0:
            raise BacktestError("slippage_pips and commission must be >= 0")
        if self.capital <= 0:
            raise BacktestError("capital must be positive")
        if self.sizing not in ("fixed", "kelly"):
            raise BacktestError(f"sizing must be 'fixed' or 'kelly', got {self.sizing!r}")
        if self.fraction < 0 or self.kelly_fraction < 0 or self.max_leverage <= 0:
            raise BacktestError("fraction and kelly_fraction must be >= 0, max_leverage > 0")
        if self.kelly_min_trades < 1:
            raise BacktestError("kelly_min_trades must be >= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_from_settings(bt: Any, horizon: int) -> BacktestConfig:
    """:class:`BacktestConfig` from the ``[backtest]`` settings (0 = exit off; time-out None =
    the forecast ``horizon``). Values are validated by the config, whose errors say which
    field is wrong. ``bqx backtest`` and paper trading both use it: one cost model."""
    timeout = horizon if bt.timeout_bars is None else (bt.timeout_bars or None)
    return BacktestConfig(
        take_profit=bt.take_profit or None,
        stop_loss=bt.stop_loss or None,
        horizon=timeout,
        reverse=bt.reverse,
        spread_pips=bt.spread_pips,
        slippage_pips=bt.slippage_pips,
        commission=bt.commission_per_million / 1e6,
        capital=bt.capital,
        sizing=bt.sizing,
        fraction=bt.fraction,
        kelly_fraction=bt.kelly_fraction,
        kelly_min_trades=bt.kelly_min_trades,
        max_leverage=bt.max_leverage,
    )


@dataclass
class BacktestResult:
    """What :func:`run` returns. All money in the account currency.

    * ``trades``: one row per trade, columns listed in :func:`run`;
    * ``equity``: per bar of the union timeline (``ts`` index): ``equity`` (portfolio,
      marked to market), ``exposure`` (open notional), ``buy_hold`` (equal-weight long of
      every pair, no costs), and per pair ``pnl_<PAIR>`` (cumulative P&L, forward-filled)
      and ``bh_<PAIR>`` (buy-and-hold equity of that pair on the full capital);
    * ``pair_exposure``: fraction of each pair's bars with an open position;
    * ``signals``: the aligned per-bar inputs (pair, ts, side, and prediction when given).
    """

    trades: pd.DataFrame
    equity: pd.DataFrame
    config: BacktestConfig
    pairs: list[str]
    n_bars: int
    pair_exposure: dict[str, float] = field(default_factory=dict)
    signals: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    def pair_equity(self, pair: str) -> pd.Series:
        """Capital plus the pair's cumulative P&L: the pair's contribution as an equity curve."""
        return self.config.capital + self.equity[f"pnl_{pair}"]

    def metrics(self, **kwargs: Any) -> dict[str, Any]:
        """Shortcut for :func:`bqx.backtest.metrics.compute_metrics`."""
        from bqx.backtest.metrics import compute_metrics

        return compute_metrics(self, **kwargs)


# --------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------
def run(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    config: BacktestConfig | None = None,
    *,
    signal_settings: SignalSettings | None = None,
) -> BacktestResult:
    """Backtest ``signals`` on ``bars`` (one or many pairs) and return a :class:`BacktestResult`.

    ``bars``: the canonical bar frame (``pair, ts, open, high, low, close``, optional
    ``spread`` in price units). ``signals``: ``pair, ts`` and ``signal`` (BUY/SELL/HOLD or
    +1/-1/0) and/or ``prediction`` (return units; turned into signals with
    :func:`bqx.signals.decide_many` and ``signal_settings`` when there is no ``signal``
    column), optionally ``max_notional`` (a cap on the notional of the trade the row opens,
    NaN = none). Bars without a signal row are HOLD; signal rows without a bar are dropped
    (and counted in ``result.warnings``).

    ``trades`` columns: ``pair, side (+1/-1), signal_ts, entry_ts, entry_mid, entry_price,
    exit_ts, exit_mid, exit_price, exit_reason, bars_held, size (notional), leverage,
    gross_pnl, spread_cost, slippage_cost, commission, net_pnl, return`` (net / size, as a
    fraction, also filled for trades sized to zero).
    """
    cfg = config or BacktestConfig()
    al = _align(bars, signals, signal_settings=signal_settings)
    pairs, bounds, ts_ns, warnings = al.pairs, al.bounds, al.ts, al.warnings
    o, h, lo, c, side, spread_col = al.open, al.high, al.low, al.close, al.side, al.spread

    per_pair: list[_PairTrades] = []
    for k, pair in enumerate(pairs):
        a, b = bounds[k]
        hs = _half_spreads(pair, spread_col[a:b], cfg, warnings)
        per_pair.append(_pair_trades(k, o[a:b], h[a:b], lo[a:b], c[a:b], side[a:b], hs, pair, cfg))

    trades_arr = _concat_trades(per_pair, bounds, ts_ns, cfg)
    cap = al.cap[trades_arr.signal_bar] if al.cap is not None else None
    notional, leverage = _size_trades(trades_arr, len(pairs), cfg, cap=cap)
    trades = _trades_frame(trades_arr, notional, leverage, pairs, ts_ns)
    equity, exposure_by_pair = _equity(trades_arr, notional, pairs, bounds, ts_ns, o, c, cfg)
    return BacktestResult(
        trades=trades,
        equity=equity,
        config=cfg,
        pairs=pairs,
        n_bars=len(ts_ns),
        pair_exposure=exposure_by_pair,
        signals=al.frame(),
        warnings=warnings,
    )


@dataclass
class _Aligned:
    """Bars sorted by (pair, ts) as arrays, with the side (+1/-1/0) decided at each bar."""

    pairs: list[str]
    bounds: list[tuple[int, int]]  # row range of each pair
    ts: np.ndarray  # int64 ns UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    spread: np.ndarray
    side: np.ndarray
    prediction: np.ndarray | None
    warnings: list[str]
    #: per bar: the most notional a trade opened by this bar's signal may have (NaN = no cap)
    cap: np.ndarray | None = None

    def frame(self) -> pd.DataFrame:
        """Per bar: pair, ts, side (and prediction when given)."""
        codes = np.repeat(np.arange(len(self.pairs)), [b - a for a, b in self.bounds])
        out = pd.DataFrame(
            {
                "pair": pd.Categorical.from_codes(codes, categories=pd.Index(self.pairs)),
                "ts": _ts_index(self.ts),
                "side": self.side,
            }
        )
        if self.prediction is not None:
            out["prediction"] = self.prediction
        return out


def _ts_index(ns: np.ndarray) -> pd.DatetimeIndex:
    """int64 nanoseconds -> tz-aware UTC DatetimeIndex (without pandas' slow parsing path)."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]")).tz_localize("UTC")


def _align(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    signal_settings: SignalSettings | None = None,
) -> _Aligned:
    need = ["pair", "ts", "open", "high", "low", "close"]
    missing = [col for col in need if col not in bars.columns]
    if missing:
        raise BacktestError(f"bars lack columns {missing}; have {list(bars.columns)}")
    if not {"pair", "ts"} <= set(signals.columns) or not (
        "signal" in signals.columns or "prediction" in signals.columns
    ):
        raise BacktestError(
            "signals need columns pair, ts and signal and/or prediction; "
            f"have {list(signals.columns)}"
        )
    if len(bars) == 0:
        raise BacktestError("no bars to backtest")

    codes, names = pd.factorize(bars["pair"], sort=False)
    pairs = [normalize_pair(str(p)) for p in names]
    if len(set(pairs)) != len(pairs):
        raise BacktestError(f"bars spell the same pair in several ways: {list(names)}")
    ts = to_utc_index(bars["ts"]).as_unit("ns").asi8
    dc, dt = np.diff(codes), np.diff(ts)
    is_sorted = bool(np.all((dc > 0) | ((dc == 0) & (dt > 0))))
    order = np.arange(0)
    if not is_sorted:
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        dc, dt = np.diff(codes), np.diff(ts)
    if np.any((dc == 0) & (dt <= 0)):
        raise BacktestError("bars have duplicate (pair, ts) rows")
    # pairs in order of first appearance after sorting
    first = np.flatnonzero(np.r_[True, dc != 0])
    ends = np.r_[first[1:], len(ts)]
    pair_order = codes[first]
    pairs = [pairs[k] for k in pair_order]
    bounds = list(zip(first.tolist(), ends.tolist(), strict=True))

    def col(name: str) -> np.ndarray:
        if name not in bars.columns:
            return np.full(len(ts), np.nan)
        x = pd.to_numeric(bars[name], errors="coerce").to_numpy(dtype="float64")
        return x if is_sorted else x[order]

    o, h, lo, c, spread = (col(n) for n in ("open", "high", "low", "close", "spread"))
    if not (np.isfinite(o).all() and np.isfinite(h).all() and np.isfinite(lo).all()):
        raise BacktestError("bars contain NaN/inf prices; clean or drop them before backtesting")
    if not np.isfinite(c).all():
        raise BacktestError("bars contain NaN/inf prices; clean or drop them before backtesting")

    # --- signals -> side per bar ------------------------------------------------------
    sig = signals
    if "signal" not in sig.columns:
        from bqx.signals import decide_many

        sig = decide_many(sig, signal_settings)
        sides = sig["side"].to_numpy(dtype=np.int8)
    else:
        from bqx.signals import signal_to_side

        sides = signal_to_side(sig["signal"])
    s_codes, s_names = pd.factorize(sig["pair"], sort=False)
    to_bar_pair = {p: i for i, p in enumerate(pairs)}
    s_map = np.array([to_bar_pair.get(normalize_pair(str(p)), -1) for p in s_names] + [-1])
    s_pair = s_map[s_codes]  # -1 (also for NaN codes): a pair without bars
    s_ts = to_utc_index(sig["ts"]).as_unit("ns").asi8
    pred = (
        pd.to_numeric(sig["prediction"], errors="coerce").to_numpy(dtype="float64")
        if "prediction" in sig.columns
        else None
    )
    cap = None
    if "max_notional" in sig.columns:
        cap = pd.to_numeric(sig["max_notional"], errors="coerce").to_numpy(dtype="float64")
        if np.any(cap < 0) or np.any(np.isinf(cap)):
            raise BacktestError(
                "max_notional must be empty (no cap) or a finite amount >= 0",
                hint="the column caps the notional of the trade a signal row opens",
            )
    side = np.zeros(len(ts), dtype=np.int8)
    pred_bar = np.full(len(ts), np.nan) if pred is not None else None
    cap_bar = np.full(len(ts), np.nan) if cap is not None else None
    matched = 0
    for k, (a, b) in enumerate(bounds):
        sel = np.flatnonzero(s_pair == k)
        if not len(sel):
            continue
        bts = ts[a:b]
        want = s_ts[sel]
        pos = np.minimum(np.searchsorted(bts, want), len(bts) - 1)
        ok = bts[pos] == want
        rows = a + pos[ok]
        if not np.all(np.diff(rows) > 0):
            srt = np.sort(rows)
            if np.any(np.diff(srt) == 0):
                raise BacktestError(f"signals have duplicate (pair, ts) rows for {pairs[k]}")
        side[rows] = sides[sel[ok]]
        if pred_bar is not None and pred is not None:
            pred_bar[rows] = pred[sel[ok]]
        if cap_bar is not None and cap is not None:
            cap_bar[rows] = cap[sel[ok]]
        matched += int(ok.sum())
    warnings: list[str] = []
    if matched < len(sig):
        warnings.append(
            f"{len(sig) - matched} of {len(sig)} signal rows match no bar (pair/ts) and were ignored"
        )
    return _Aligned(
        pairs=pairs,
        bounds=bounds,
        ts=ts,
        open=o,
        high=h,
        low=lo,
        close=c,
        spread=spread,
        side=side,
        prediction=pred_bar,
        warnings=warnings,
        cap=cap_bar if cap_bar is not None and np.isfinite(cap_bar).any() else None,
    )


# --------------------------------------------------------------------------------------
# phase 1: trade timing per pair (independent of money)
# --------------------------------------------------------------------------------------
@dataclass
class _PairTrades:
    pair_ix: int
    side: np.ndarray
    signal_bar: np.ndarray
    entry_bar: np.ndarray
    exit_bar: np.ndarray
    exit_phase: np.ndarray
    reason: np.ndarray
    entry_mid: np.ndarray
    exit_mid: np.ndarray
    hs_in: np.ndarray
    hs_out: np.ndarray
    slip: float


def _half_spreads(
    pair: str, spread: np.ndarray, cfg: BacktestConfig, warnings: list[str]
) -> np.ndarray:
    """Half spread per bar in price units (data, or the fixed ``spread_pips`` setting)."""
    pip = pip_size(pair)
    if cfg.spread_pips is not None:
        return np.full(len(spread), 0.5 * cfg.spread_pips * pip)
    ok = np.isfinite(spread) & (spread >= 0)
    if ok.all():
        return 0.5 * spread
    if not ok.any():
        raise BacktestError(
            f"{pair}: the bars have no spread column/values",
            hint="pass a fixed spread with spread_pips (CLI: --spread-pips)",
        )
    fill = float(np.median(spread[ok]))
    warnings.append(
        f"{pair}: {int((~ok).sum())} bars without spread use the pair's median spread "
        f"({fill / pip:.2f} pips)"
    )
    return 0.5 * np.where(ok, spread, fill)


def _pair_trades(
    pair_ix: int,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    side: np.ndarray,
    hs: np.ndarray,
    pair: str,
    cfg: BacktestConfig,
) -> _PairTrades:
    """Walk the pair's signals trade by trade; each exit is a numpy scan, not a bar loop.

    Scalar look-ups go through ``array.array`` views (fast Python scalars, 8 bytes a bar);
    "next signal of a kind at or after t" comes from precomputed suffix minima, so each
    trade costs O(1) Python steps plus a scan of the bars it is open.
    """
    n = len(o)
    next_nz = _next_index(side != 0)
    next_buy = _next_index(side > 0)
    next_sell = _next_index(side < 0)
    side_a = _arr("b", side)
    o_a = _arr("d", o)
    h_a = _arr("d", h)
    lo_a = _arr("d", lo)
    horizon = cfg.horizon if cfg.horizon is not None else n + 1
    tp, sl = cfg.take_profit, cfg.stop_loss
    has_levels = tp is not None or sl is not None

    rec_side: list[int] = []
    rec_sig: list[int] = []
    rec_e: list[int] = []
    rec_x: list[int] = []
    rec_ph: list[int] = []
    rec_reason: list[int] = []
    rec_emid: list[float] = []
    rec_xmid: list[float] = []

    t = 0  # first signal bar allowed to open the next trade
    while t < n:
        s_bar = next_nz[t]
        e = s_bar + 1
        if e >= n:
            break
        sd = side_a[s_bar]
        emid = o_a[e]
        opp = next_sell[e] if sd > 0 else next_buy[e]
        x_sig = opp + 1 if opp < n else n + horizon + 1
        x_to = e + horizon
        x_open = x_sig if x_sig < x_to else x_to
        reason = _SIG if x_sig <= x_to else _TO
        lim = x_open if x_open < n else n

        hit = -1
        if has_levels and lim > e:
            if sd > 0:
                up = emid * (1.0 + tp) if tp is not None else math.inf
                dn = emid * (1.0 - sl) if sl is not None else -math.inf
                hit = _first_hit(h, lo, h_a, lo_a, e, lim, up, dn)
            else:
                up = emid * (1.0 + sl) if sl is not None else math.inf
                dn = emid * (1.0 - tp) if tp is not None else -math.inf
                hit = _first_hit(h, lo, h_a, lo_a, e, lim, up, dn)

        if hit >= 0:
            x = hit
            op = o_a[x]
            if sd > 0:
                stop_hit, tp_hit = lo[x] <= dn, h[x] >= up
                gap_stop, gap_tp = x > e and op <= dn, x > e and op >= up
            else:
                stop_hit, tp_hit = h[x] >= up, lo[x] <= dn
                gap_stop, gap_tp = x > e and op >= up, x > e and op <= dn
            if gap_stop:
                xmid, reason, phase = op, _SL, _PH_OPEN_EXIT
            elif gap_tp:
                xmid, reason, phase = op, _TP, _PH_OPEN_EXIT
            elif stop_hit:  # both levels in one bar: assume the stop
                xmid, reason, phase = (dn if sd > 0 else up), _SL, _PH_INTRABAR
            else:
                assert tp_hit
                xmid, reason, phase = (up if sd > 0 else dn), _TP, _PH_INTRABAR
            next_t = x
        elif x_open < n:
            x, xmid, phase = x_open, o_a[x_open], _PH_OPEN_EXIT
            next_t = x_open - 1 if (reason == _SIG and cfg.reverse) else x_open
        else:
            x, xmid, reason, phase = n - 1, float(c[n - 1]), _END, _PH_CLOSE
            next_t = n

        rec_side.append(sd)
        rec_sig.append(s_bar)
        rec_e.append(e)
        rec_x.append(x)
        rec_ph.append(phase)
        rec_reason.append(reason)
        rec_emid.append(emid)
        rec_xmid.append(float(xmid))
        t = next_t

    e_arr = np.asarray(rec_e, dtype=np.int64)
    x_arr = np.asarray(rec_x, dtype=np.int64)
    return _PairTrades(
        pair_ix=pair_ix,
        side=np.asarray(rec_side, dtype=np.int8),
        signal_bar=np.asarray(rec_sig, dtype=np.int64),
        entry_bar=e_arr,
        exit_bar=x_arr,
        exit_phase=np.asarray(rec_ph, dtype=np.int8),
        reason=np.asarray(rec_reason, dtype=np.int8),
        entry_mid=np.asarray(rec_emid, dtype="float64"),
        exit_mid=np.asarray(rec_xmid, dtype="float64"),
        hs_in=hs[e_arr] if len(e_arr) else np.zeros(0),
        hs_out=hs[x_arr] if len(x_arr) else np.zeros(0),
        slip=cfg.slippage_pips * pip_size(pair),
    )


def _first_hit(
    h: np.ndarray,
    lo: np.ndarray,
    h_a: array,
    lo_a: array,
    a: int,
    b: int,
    up: float,
    dn: float,
) -> int:
    """First bar in ``[a, b)`` whose high reaches ``up`` or low reaches ``dn`` (-1 if none).

    The first few bars are scanned in Python (cheaper than numpy's call overhead), the rest
    in numpy blocks that grow geometrically, so a hit near the entry costs little.
    """
    stop = a + 8 if a + 8 < b else b
    for i in range(a, stop):
        if h_a[i] >= up or lo_a[i] <= dn:
            return i
    start, block = stop, 64
    while start < b:
        stop = min(b, start + block)
        m = (h[start:stop] >= up) | (lo[start:stop] <= dn)
        i = int(m.argmax())
        if m[i]:
            return start + i
        start, block = stop, block * 4
    return -1


def _next_index(mask: np.ndarray) -> array:
    """``out[t]`` = first index >= t where ``mask`` is true, ``len(mask)`` if none (length n+1)."""
    n = len(mask)
    idx = np.where(mask, np.arange(n), n)
    nxt = np.minimum.accumulate(idx[::-1])[::-1]
    return _arr("q", np.r_[nxt, n])


def _arr(code: str, x: np.ndarray) -> array:
    """A compact ``array.array`` copy of ``x`` (indexing it yields plain Python scalars)."""
    dtype = {"b": np.int8, "q": np.int64, "d": np.float64}[code]
    out = array(code)
    out.frombytes(np.ascontiguousarray(x, dtype=dtype).tobytes())
    return out


# --------------------------------------------------------------------------------------
# phase 2: money (sizing across the portfolio, in event order)
# --------------------------------------------------------------------------------------
@dataclass
class _Trades:
    """All trades of all pairs as flat arrays (global bar indices)."""

    pair_ix: np.ndarray
    side: np.ndarray
    signal_bar: np.ndarray
    entry_bar: np.ndarray
    exit_bar: np.ndarray
    reason: np.ndarray
    entry_mid: np.ndarray
    exit_mid: np.ndarray
    entry_fill: np.ndarray
    exit_fill: np.ndarray
    gross: np.ndarray  # fractions of notional
    spread: np.ndarray
    slippage: np.ndarray
    commission: np.ndarray
    net: np.ndarray
    entry_cost: np.ndarray  # fraction of notional paid at entry (for marking to market)
    entry_key: np.ndarray
    exit_key: np.ndarray


def _concat_trades(
    per_pair: list[_PairTrades],
    bounds: list[tuple[int, int]],
    ts_ns: np.ndarray,
    cfg: BacktestConfig,
) -> _Trades:
    def cat(name: str, dtype: Any) -> np.ndarray:
        parts = [np.asarray(getattr(p, name)) for p in per_pair]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    offsets = [np.full(len(p.entry_bar), bounds[p.pair_ix][0], dtype=np.int64) for p in per_pair]
    off = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64)
    slip = (
        np.concatenate([np.full(len(p.entry_bar), p.slip) for p in per_pair])
        if per_pair
        else np.zeros(0)
    )
    pair_ix = (
        np.concatenate([np.full(len(p.entry_bar), p.pair_ix) for p in per_pair])
        if per_pair
        else np.zeros(0, dtype=np.int64)
    ).astype(np.int64)
    side = cat("side", np.float64)
    e = cat("entry_bar", np.int64) + off
    x = cat("exit_bar", np.int64) + off
    emid, xmid = cat("entry_mid", np.float64), cat("exit_mid", np.float64)
    hs_in, hs_out = cat("hs_in", np.float64), cat("hs_out", np.float64)
    efill = emid + side * (hs_in + slip)
    xfill = xmid - side * (hs_out + slip)
    gross = side * (xmid - emid) / efill
    spread = (hs_in + hs_out) / efill
    slippage = 2.0 * slip / efill
    commission = cfg.commission * (emid + xmid) / efill
    return _Trades(
        pair_ix=pair_ix,
        side=side.astype(np.int8),
        signal_bar=cat("signal_bar", np.int64) + off,
        entry_bar=e,
        exit_bar=x,
        reason=cat("reason", np.int8),
        entry_mid=emid,
        exit_mid=xmid,
        entry_fill=efill,
        exit_fill=xfill,
        gross=gross,
        spread=spread,
        slippage=slippage,
        commission=commission,
        net=gross - spread - slippage - commission,
        entry_cost=(hs_in + slip + cfg.commission * emid) / efill,
        entry_key=(ts_ns[e] // 1000) * 4 + _PH_ENTRY if len(e) else np.zeros(0, np.int64),
        exit_key=(ts_ns[x] // 1000) * 4 + cat("exit_phase", np.int64)
        if len(x)
        else np.zeros(0, np.int64),
    )


def _size_trades(
    tr: _Trades, n_pairs: int, cfg: BacktestConfig, cap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Notional per trade and leverage at entry, walking entries and exits in time order.

    ``cap`` (per trade, NaN = none): the most notional the trade may have, applied after
    the sizing rule and the leverage room (the ``max_notional`` column of the signals: paper
    trading logs the risk manager's allowed quantity there)."""
    n = len(tr.entry_bar)
    notional = np.zeros(n)
    leverage = np.zeros(n)
    if n == 0:
        return notional, leverage
    capped = cap is not None and bool(np.isfinite(cap).any())
    if n_pairs == 1 and cfg.sizing == "fixed" and not capped:
        return _size_fixed_single(tr, cfg)
    cap_l = cap.tolist() if cap is not None and capped else None
    entry_order = np.lexsort((tr.pair_ix, tr.entry_key)).tolist()
    exit_order = np.lexsort((tr.pair_ix, tr.exit_key)).tolist()
    exit_key = tr.exit_key.tolist()
    entry_key = tr.entry_key.tolist()
    net = tr.net.tolist()
    pix = tr.pair_ix.tolist()
    kelly = cfg.sizing == "kelly"
    # per pair: trades, wins, sum of winning returns, sum of losing |returns|
    n_tr = [0] * n_pairs
    n_win = [0] * n_pairs
    s_win = [0.0] * n_pairs
    s_loss = [0.0] * n_pairs
    balance = float(cfg.capital)
    open_notional = 0.0
    max_lev = float(cfg.max_leverage)
    ptr = 0
    out_n = [0.0] * n
    out_l = [0.0] * n
    for i in entry_order:
        ek = entry_key[i]
        while ptr < n and exit_key[exit_order[ptr]] < ek:
            j = exit_order[ptr]
            ptr += 1
            nj = out_n[j]
            balance += nj * net[j]
            open_notional -= nj
            p = pix[j]
            n_tr[p] += 1
            if net[j] > 0:
                n_win[p] += 1
                s_win[p] += net[j]
            else:
                s_loss[p] -= net[j]
        if balance <= 0:
            continue  # ruined: nothing more is traded
        p = pix[i]
        f = cfg.fraction
        if kelly and n_tr[p] >= cfg.kelly_min_trades:
            f = cfg.kelly_fraction * _kelly_leverage(n_tr[p], n_win[p], s_win[p], s_loss[p])
        f = min(max(f, 0.0), max_lev)
        size = min(f * balance, max(max_lev * balance - open_notional, 0.0))
        if cap_l is not None and cap_l[i] < size:  # NaN compares False: no cap
            size = cap_l[i]
        out_n[i] = size
        out_l[i] = size / balance
        open_notional += size
    notional[:] = out_n
    leverage[:] = out_l
    return notional, leverage


def _size_fixed_single(tr: _Trades, cfg: BacktestConfig) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised fixed-fraction sizing of one pair's trades (they never overlap in time).

    Trades are in entry order and each exits before the next enters, so the balance before
    trade k is ``capital * prod_{j<k} (1 + f * r_j)``; after a ruin (balance <= 0) nothing
    more is traded. Gives the same numbers as the event loop of :func:`_size_trades`.
    """
    order = np.argsort(tr.entry_key, kind="stable")
    f = min(max(cfg.fraction, 0.0), cfg.max_leverage)
    growth = 1.0 + f * tr.net[order]
    ruined = np.flatnonzero(growth <= 0)
    balance = cfg.capital * np.r_[1.0, np.cumprod(growth)[:-1]]
    lev = np.full(len(order), f)
    if len(ruined):
        balance[ruined[0] + 1 :] = 0.0
        lev[ruined[0] + 1 :] = 0.0
    notional = np.zeros(len(order))
    leverage = np.zeros(len(order))
    notional[order] = f * balance
    leverage[order] = lev
    return notional, leverage


def _kelly_leverage(n: int, wins: int, sum_win: float, sum_loss: float) -> float:
    """Growth-optimal notional / equity for a two-outcome trade: ``f* / L`` (see module doc)."""
    w = wins / n
    if wins == 0:
        return 0.0
    if wins == n or sum_loss <= 0:
        return math.inf
    g = sum_win / wins
    loss = sum_loss / (n - wins)
    if loss <= 0:
        return math.inf
    f_star = w - (1.0 - w) / (g / loss) if g > 0 else -math.inf
    return f_star / loss


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------
def _trades_frame(
    tr: _Trades, notional: np.ndarray, leverage: np.ndarray, pairs: list[str], ts_ns: np.ndarray
) -> pd.DataFrame:
    def ts(ix: np.ndarray) -> pd.DatetimeIndex:
        return _ts_index(ts_ns[ix])

    order = np.lexsort((tr.pair_ix, tr.entry_key)) if len(tr.entry_key) else np.zeros(0, int)
    df = pd.DataFrame(
        {
            "pair": np.asarray(pairs, dtype=object)[tr.pair_ix] if len(pairs) else [],
            "side": tr.side.astype(np.int64),
            "signal_ts": ts(tr.signal_bar),
            "entry_ts": ts(tr.entry_bar),
            "entry_mid": tr.entry_mid,
            "entry_price": tr.entry_fill,
            "exit_ts": ts(tr.exit_bar),
            "exit_mid": tr.exit_mid,
            "exit_price": tr.exit_fill,
            "exit_reason": np.asarray(EXIT_REASONS, dtype=object)[tr.reason.astype(np.int64)],
            "bars_held": tr.exit_bar - tr.entry_bar,
            "size": notional,
            "leverage": leverage,
            "gross_pnl": notional * tr.gross,
            "spread_cost": notional * tr.spread,
            "slippage_cost": notional * tr.slippage,
            "commission": notional * tr.commission,
            "net_pnl": notional * tr.net,
            "return": tr.net,
        }
    )
    return df.iloc[order].reset_index(drop=True)


def _equity(
    tr: _Trades,
    notional: np.ndarray,
    pairs: list[str],
    bounds: list[tuple[int, int]],
    ts_ns: np.ndarray,
    o: np.ndarray,
    c: np.ndarray,
    cfg: BacktestConfig,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Mark-to-market P&L per pair bar, then on the union timeline (forward-filled)."""
    n = len(ts_ns)
    realised = np.bincount(tr.exit_bar, weights=notional * tr.net, minlength=n).astype("float64")
    # bars whose close sees the trade open: [entry_bar, exit_bar)
    lengths = tr.exit_bar - tr.entry_bar
    tot = int(lengths.sum())
    tid = np.repeat(np.arange(len(lengths)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    bar = tr.entry_bar[tid] + (np.arange(tot) - first)
    unreal = np.zeros(n)
    open_notional = np.zeros(n)
    if tot:
        nt = notional[tid]
        unreal[bar] = nt * (
            tr.side[tid] * (c[bar] - tr.entry_mid[tid]) / tr.entry_fill[tid] - tr.entry_cost[tid]
        )
        open_notional[bar] = nt
    in_pos = np.zeros(n, dtype=bool)
    if tot:
        in_pos[bar] = True

    union = _union(ts_ns, bounds)
    cols: dict[str, np.ndarray] = {}
    total = np.zeros(len(union))
    expo = np.zeros(len(union))
    bh_sum = np.zeros(len(union))
    exposure_by_pair: dict[str, float] = {}
    for k, pair in enumerate(pairs):
        a, b = bounds[k]
        pnl = np.cumsum(realised[a:b]) + unreal[a:b]
        if b - a == len(union) and np.array_equal(ts_ns[a:b], union):
            pos = np.arange(b - a)  # the pair's grid is the union
        else:
            pos = np.searchsorted(ts_ns[a:b], union, side="right") - 1
        seen = pos >= 0
        posc = np.clip(pos, 0, None)
        pnl_u = np.where(seen, pnl[posc], 0.0)
        bh = cfg.capital * c[a:b] / o[a]
        bh_u = np.where(seen, bh[posc], cfg.capital)
        cols[f"pnl_{pair}"] = pnl_u
        cols[f"bh_{pair}"] = bh_u
        total += pnl_u
        bh_sum += bh_u
        expo += np.where(seen, open_notional[a:b][posc], 0.0)
        exposure_by_pair[pair] = float(in_pos[a:b].mean()) if b > a else 0.0
    frame = pd.DataFrame(
        {
            "equity": cfg.capital + total,
            "exposure": expo,
            "buy_hold": bh_sum / max(len(pairs), 1),
            **cols,
        },
        index=_ts_index(union).rename("ts"),
    )
    return frame, exposure_by_pair


def _union(ts_ns: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Sorted union of the pairs' timestamps (fast paths: one pair, identical grids)."""
    a0, b0 = bounds[0]
    first = ts_ns[a0:b0]
    if len(bounds) == 1 or all(
        b - a == b0 - a0 and np.array_equal(ts_ns[a:b], first) for a, b in bounds[1:]
    ):
        return first
    srt = np.sort(ts_ns, kind="stable")
    return srt[np.r_[True, srt[1:] != srt[:-1]]]
