"""Performance, trade, significance and prediction metrics for backtests.

Conventions (stated in every output under ``"conventions"``):

* Returns are simple fractions (0.01 = 1 %). Risk ratios use **daily** returns on **FX
  trading days**: a trading day ends at 17:00 New York (the rollover), so Sunday-evening
  bars belong to Monday and weekends never appear. Annualisation uses ``N = 260`` trading
  days a year (peers differ: backtesting.py uses 252 or 365 days, vectorbt annualises per
  bar over 365 days, which inflates intraday FX Sharpe ratios by ~1.18x).
* Sharpe and Sortino assume a zero risk-free rate. Sortino's downside deviation is
  ``sqrt(mean(min(r, 0)^2))`` over all days.
* CAGR annualises the total return over the number of trading days / N.
* Drawdowns come from the bar-by-bar marked-to-market equity (finer than daily).
* Significance: a one-sample t-test of daily returns against 0, a block bootstrap (seeded)
  95 % interval of the annualised Sharpe ratio, and the probabilistic Sharpe ratio
  (Bailey & Lopez de Prado 2012) against a benchmark Sharpe of 0, with the skewness and
  (Pearson) kurtosis of the daily returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from bqx.calendar import NY

if TYPE_CHECKING:
    from bqx.backtest.engine import BacktestResult

__all__ = [
    "PERIODS_PER_YEAR",
    "LeakageThresholds",
    "compute_metrics",
    "daily_returns",
    "drawdown",
    "leakage_alarms",
    "leakage_checks",
    "prediction_metrics",
    "probabilistic_sharpe",
    "realized_targets",
    "returns_metrics",
    "sharpe",
    "sharpe_bootstrap_ci",
    "trade_metrics",
    "window_table",
]

#: FX trading days per year used to annualise daily statistics.
PERIODS_PER_YEAR = 260
_DAY_END_SHIFT = pd.Timedelta(hours=7)  # 17:00 New York + 7 h = midnight: the day label


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
def trading_day(ts: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """FX trading-day label of each timestamp: the day that ends at the next 17:00 New York."""
    local = ts.tz_convert(NY).tz_localize(None)
    return (local + _DAY_END_SHIFT).normalize()


def daily_returns(equity: pd.Series, initial: float | None = None) -> pd.Series:
    """Daily simple returns of an equity curve on FX trading days (index: trading-day label).

    The last equity value of each trading day is that day's close; the first day's return is
    measured from ``initial`` (default: the first equity value, i.e. the starting capital).
    """
    if len(equity) == 0:
        return pd.Series([], dtype="float64")
    idx = pd.DatetimeIndex(equity.index)
    days = trading_day(idx)
    vals = equity.to_numpy(dtype="float64")
    last = np.r_[days[1:] != days[:-1], True]
    close = pd.Series(vals[last], index=days[last])
    start = float(vals[0] if initial is None else initial)
    prev = np.r_[start, close.to_numpy()[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = close.to_numpy() / prev - 1.0
    return pd.Series(r, index=close.index, name="return")


def sharpe(returns: Any, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio ``mean / std (ddof=1) * sqrt(N)`` (risk-free rate 0)."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    if sd == 0:
        return float("nan")
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def sortino(returns: Any, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio: mean over the downside deviation ``sqrt(mean(min(r,0)^2))``."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return float("nan")
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd == 0:
        return float("inf") if r.mean() > 0 else float("nan")
    return float(r.mean() / dd * math.sqrt(periods_per_year))


def probabilistic_sharpe(returns: Any, benchmark: float = 0.0) -> float:
    """Probability that the true (per-period) Sharpe ratio exceeds ``benchmark``.

    ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with the
    non-annualised SR of ``returns``, their skewness g3 and Pearson kurtosis g4 (3 for a
    normal). ``benchmark`` is per period too (0 by default).
    """
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 3:
        return float("nan")
    sd = r.std(ddof=1)
    if sd == 0:
        return float("nan")
    sr = r.mean() / sd
    g3 = float(stats.skew(r))
    g4 = float(stats.kurtosis(r, fisher=False))
    var = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
    if var <= 0:
        return float("nan")
    return float(stats.norm.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(var)))


def sharpe_bootstrap_ci(
    returns: Any,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    periods_per_year: int = PERIODS_PER_YEAR,
    block: int | None = None,
) -> tuple[float, float]:
    """Percentile interval of the annualised Sharpe from a circular moving-block bootstrap of
    the days (:func:`bqx.stats.block_bootstrap`). Blocks (default: the Newey-West window
    :func:`bqx.stats.default_lags`, >= 1 day) keep the serial dependence of daily P&L -
    positions that span midnight, volatility clustering - that an iid resample would erase
    (and so understate the width)."""
    from bqx.stats import block_bootstrap, default_lags

    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 3 or r.std() == 0:
        return (float("nan"), float("nan"))
    b = max(1, default_lags(n) if block is None else int(block))

    def sr(x: np.ndarray) -> float:
        sd = x.std(ddof=1)
        return float(x.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else float("nan")

    e = block_bootstrap(sr, [r], block=b, n_boot=n_boot, level=level, seed=seed)
    return (e.lo, e.hi)


@dataclass(frozen=True)
class Drawdown:
    """Worst peak-to-trough loss of an equity curve (``max_drawdown`` is a negative fraction).

    ``duration_days`` is the time from that drawdown's peak to its recovery (or to the end
    when it has not recovered); ``longest_days`` the longest time spent under any earlier
    peak. Durations are calendar days (weekends included).
    """

    max_drawdown: float
    peak: pd.Timestamp | None
    trough: pd.Timestamp | None
    recovery: pd.Timestamp | None
    duration_days: float
    longest_days: float
    series: pd.Series

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("series")
        return d


def drawdown(equity: pd.Series) -> Drawdown:
    """Drawdown analysis of a (bar-by-bar) equity curve indexed by timestamps."""
    v = equity.to_numpy(dtype="float64")
    idx = pd.DatetimeIndex(equity.index)
    if len(v) == 0:
        return Drawdown(0.0, None, None, None, 0.0, 0.0, pd.Series([], dtype="float64"))
    peak = np.maximum.accumulate(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, v / peak - 1.0, 0.0)
    ser = pd.Series(dd, index=equity.index, name="drawdown")
    t = int(np.argmin(dd))
    ns = idx.as_unit("ns").asi8
    # index of the running peak for each bar
    at_peak = v >= peak
    peak_ix = np.maximum.accumulate(np.where(at_peak, np.arange(len(v)), 0))
    underwater = ~at_peak
    # longest underwater stretch: from its peak to recovery (first bar back at peak) or end
    longest = 0.0
    if underwater.any():
        starts = np.flatnonzero(underwater & ~np.r_[False, underwater[:-1]])
        ends = np.flatnonzero(underwater & ~np.r_[underwater[1:], False])
        rec = np.minimum(ends + 1, len(v) - 1)
        dur = (ns[rec] - ns[peak_ix[starts]]) / 86_400e9
        longest = float(dur.max())
    if dd[t] >= 0:
        return Drawdown(0.0, None, None, None, 0.0, longest, ser)
    p = int(peak_ix[t])
    after = np.flatnonzero(v[t:] >= peak[t])
    rec_ix = t + int(after[0]) if len(after) else None
    end_ns = ns[rec_ix] if rec_ix is not None else ns[-1]
    return Drawdown(
        max_drawdown=float(dd[t]),
        peak=idx[p],
        trough=idx[t],
        recovery=idx[rec_ix] if rec_ix is not None else None,
        duration_days=float((end_ns - ns[p]) / 86_400e9),
        longest_days=longest,
        series=ser,
    )


def _ess(r: np.ndarray) -> float:
    from bqx.stats import effective_sample_size

    return effective_sample_size(r) if len(r) > 1 else float(len(r))


def returns_metrics(
    equity: pd.Series,
    *,
    initial: float | None = None,
    periods_per_year: int = PERIODS_PER_YEAR,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Return, risk and significance metrics of one equity curve (see the module doc)."""
    e0 = float(equity.iloc[0] if initial is None else initial) if len(equity) else float("nan")
    daily = daily_returns(equity, initial=e0)
    r = daily.to_numpy()
    n_days = len(r)
    final = float(equity.iloc[-1]) if len(equity) else float("nan")
    total = final / e0 - 1.0 if e0 else float("nan")
    years = n_days / periods_per_year
    if years > 0 and final > 0:
        cagr = (final / e0) ** (1.0 / years) - 1.0
    elif final <= 0:
        cagr = -1.0
    else:
        cagr = float("nan")
    vol = float(np.std(r, ddof=1) * math.sqrt(periods_per_year)) if n_days > 1 else float("nan")
    dd = drawdown(equity)
    if n_days > 1 and np.std(r) > 0:
        tt = stats.ttest_1samp(r, 0.0)
        t_stat, p_two = float(tt.statistic), float(tt.pvalue)
        p_one = float(stats.t.sf(t_stat, n_days - 1))
    else:
        t_stat = p_two = p_one = float("nan")
    lo, hi = sharpe_bootstrap_ci(r, n_boot=n_boot, seed=seed, periods_per_year=periods_per_year)
    calmar = cagr / abs(dd.max_drawdown) if dd.max_drawdown < 0 else float("nan")
    return {
        "initial_equity": e0,
        "final_equity": final,
        "total_return": total,
        "cagr": cagr,
        "volatility": vol,
        "sharpe": sharpe(r, periods_per_year),
        "sortino": sortino(r, periods_per_year),
        "max_drawdown": dd.max_drawdown,
        "max_drawdown_peak": dd.peak,
        "max_drawdown_trough": dd.trough,
        "max_drawdown_recovery": dd.recovery,
        "max_drawdown_duration_days": dd.duration_days,
        "longest_drawdown_days": dd.longest_days,
        "calmar": calmar,
        "trading_days": n_days,
        "best_day": float(np.max(r)) if n_days else float("nan"),
        "worst_day": float(np.min(r)) if n_days else float("nan"),
        "significance": {
            "t_stat": t_stat,
            "p_value": p_two,
            "p_value_one_sided": p_one,
            "sharpe_ci95": [lo, hi],
            "sharpe_ci_method": "block_bootstrap",
            "n_eff_days": _ess(r),
            "psr": probabilistic_sharpe(r, 0.0),
            "skew": float(stats.skew(r)) if n_days > 2 else float("nan"),
            "kurtosis": float(stats.kurtosis(r, fisher=False)) if n_days > 3 else float("nan"),
        },
    }


def trade_metrics(trades: pd.DataFrame) -> dict[str, Any]:
    """Trade statistics on executed trades (``size > 0``); money in the account currency."""
    t = trades[trades["size"] > 0] if len(trades) else trades
    n = len(t)
    skipped = len(trades) - n
    if n == 0:
        return {"trades": 0, "skipped_trades": skipped, "win_rate": float("nan")}
    pnl = t["net_pnl"].to_numpy(dtype="float64")
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    gl = float(-losses.sum())
    reasons = t["exit_reason"].value_counts().to_dict()
    return {
        "trades": n,
        "skipped_trades": skipped,
        "long_trades": int((t["side"] > 0).sum()),
        "short_trades": int((t["side"] < 0).sum()),
        "win_rate": float(len(wins) / n),
        "profit_factor": float(wins.sum() / gl) if gl > 0 else float("inf"),
        "avg_trade": float(pnl.mean()),
        "avg_trade_return": float(t["return"].mean()),
        "avg_win": float(wins.mean()) if len(wins) else float("nan"),
        "avg_loss": float(losses.mean()) if len(losses) else float("nan"),
        "avg_bars_held": float(t["bars_held"].mean()),
        "gross_pnl": float(t["gross_pnl"].sum()),
        "spread_cost": float(t["spread_cost"].sum()),
        "slippage_cost": float(t["slippage_cost"].sum()),
        "commission": float(t["commission"].sum()),
        "net_pnl": float(pnl.sum()),
        "exit_reasons": {str(k): int(v) for k, v in reasons.items()},
    }


def prediction_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Out-of-sample R² (against the sample mean) and directional accuracy (sign hit rate).

    Rows where either value is NaN are ignored; directional accuracy ignores ``y_true == 0``.
    """
    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(y_pred, dtype="float64")
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    n = len(y)
    if n < 2:
        return {"n": n, "r2": float("nan"), "directional_accuracy": float("nan")}
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - p) ** 2)) / ss if ss > 0 else float("nan")
    nz = y != 0
    da = float(np.mean(np.sign(p[nz]) == np.sign(y[nz]))) if nz.any() else float("nan")
    return {"n": n, "r2": r2, "directional_accuracy": da}


# --------------------------------------------------------------------------------------
# leakage alarm
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakageThresholds:
    """Results above these on real FX are flagged as probable lookahead, not celebrated."""

    r2: float = 0.3
    directional_accuracy: float = 0.6
    sharpe: float = 3.0


def leakage_checks(
    metrics: dict[str, Any],
    windows: pd.DataFrame | None = None,
    thresholds: LeakageThresholds | None = None,
) -> list[dict[str, Any]]:
    """Every leakage check made, as ``{scope, metric, value, threshold, flagged}``.

    Checks the portfolio and per-pair net Sharpe, the overall and per-pair prediction
    metrics (``metrics["prediction"]``) and each window's R² and directional accuracy.
    NaN values are not checked.
    """
    th = thresholds or LeakageThresholds()
    out: list[dict[str, Any]] = []

    def check(scope: str, metric: str, value: Any, limit: float) -> None:
        if isinstance(value, int | float | np.floating) and math.isfinite(float(value)):
            out.append(
                {
                    "scope": scope,
                    "metric": metric,
                    "value": float(value),
                    "threshold": limit,
                    "flagged": bool(value > limit),
                }
            )

    check("portfolio", "sharpe", metrics.get("portfolio", {}).get("sharpe"), th.sharpe)
    for pair, m in metrics.get("pairs", {}).items():
        check(pair, "sharpe", m.get("sharpe"), th.sharpe)
    for scope, m in (metrics.get("prediction") or {}).items():
        check(scope, "r2", m.get("r2"), th.r2)
        check(scope, "directional_accuracy", m.get("directional_accuracy"), th.directional_accuracy)
    if windows is not None and len(windows):
        for row in windows.to_dict("records"):
            scope = f"window {row['window']}"
            check(scope, "r2", row.get("r2"), th.r2)
            check(
                scope,
                "directional_accuracy",
                row.get("directional_accuracy"),
                th.directional_accuracy,
            )
    return out


def leakage_alarms(
    metrics: dict[str, Any],
    windows: pd.DataFrame | None = None,
    thresholds: LeakageThresholds | None = None,
) -> list[dict[str, Any]]:
    """The flagged subset of :func:`leakage_checks`: each one is a probable lookahead bug."""
    return [c for c in leakage_checks(metrics, windows, thresholds) if c["flagged"]]


# --------------------------------------------------------------------------------------
# the whole picture
# --------------------------------------------------------------------------------------
def compute_metrics(
    result: BacktestResult,
    *,
    predictions: pd.DataFrame | None = None,
    periods_per_year: int = PERIODS_PER_YEAR,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Portfolio, per-pair, buy-and-hold and (optionally) prediction metrics as plain data.

    ``predictions`` (``pair, ts, prediction, y_true``) adds out-of-sample prediction metrics
    overall and per pair; by default the result's aligned predictions are used when they
    carry ``y_true``.
    """
    cfg = result.config
    eq = result.equity
    port = returns_metrics(
        eq["equity"],
        initial=cfg.capital,
        periods_per_year=periods_per_year,
        n_boot=n_boot,
        seed=seed,
    )
    port.update(trade_metrics(result.trades))
    port["exposure"] = float((eq["exposure"] > 0).mean()) if len(eq) else 0.0
    port["avg_leverage"] = float((eq["exposure"] / eq["equity"]).mean()) if len(eq) else 0.0
    port["max_leverage_used"] = float((eq["exposure"] / eq["equity"]).max()) if len(eq) else 0.0
    bh_port = returns_metrics(
        eq["buy_hold"],
        initial=cfg.capital,
        periods_per_year=periods_per_year,
        n_boot=n_boot,
        seed=seed,
    )
    pairs: dict[str, Any] = {}
    buy_hold: dict[str, Any] = {"portfolio": _short(bh_port)}
    for p in result.pairs:
        m = returns_metrics(
            result.pair_equity(p),
            initial=cfg.capital,
            periods_per_year=periods_per_year,
            n_boot=n_boot,
            seed=seed,
        )
        m.update(trade_metrics(result.trades[result.trades["pair"] == p]))
        m["exposure"] = result.pair_exposure.get(p, 0.0)
        pairs[p] = m
        buy_hold[p] = _short(
            returns_metrics(
                eq[f"bh_{p}"],
                initial=cfg.capital,
                periods_per_year=periods_per_year,
                n_boot=n_boot,
                seed=seed,
            )
        )
    out: dict[str, Any] = {
        "conventions": {
            "periods_per_year": periods_per_year,
            "return_basis": "daily simple returns on FX trading days (day ends 17:00 New York)",
            "risk_free_rate": 0.0,
            "pnl": "fraction of notional: side*(exit_mid-entry_mid)/entry_price - costs",
            "per_pair": "capital + the pair's cumulative P&L (its contribution)",
            "buy_hold": "long each pair on the full capital from its first open, no costs; "
            "portfolio = equal weight",
        },
        "config": cfg.as_dict(),
        "period": {
            "start": eq.index[0] if len(eq) else None,
            "end": eq.index[-1] if len(eq) else None,
            "bars": result.n_bars,
            "pairs": list(result.pairs),
        },
        "portfolio": port,
        "pairs": pairs,
        "buy_hold": buy_hold,
        "warnings": list(result.warnings),
    }
    pred = predictions
    if pred is None and result.signals is not None and "y_true" in result.signals.columns:
        pred = result.signals
    if pred is not None and {"prediction", "y_true"} <= set(pred.columns):
        pm: dict[str, Any] = {"all": prediction_metrics(pred["y_true"], pred["prediction"])}
        for gp, g in pred.groupby("pair", sort=True):
            pm[str(gp)] = prediction_metrics(g["y_true"], g["prediction"])
        out["prediction"] = pm
    return out


def _short(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")
    return {k: m[k] for k in keys}


def realized_targets(
    bars: pd.DataFrame,
    horizon: int = 60,
    target: str = "bqx",
    *,
    interval: Any = None,
    max_ffill: int = 5,
) -> pd.DataFrame:
    """The realised target per bar (``pair, ts, y_true``): the features pipeline's own target.

    One definition: :func:`bqx.features.pipeline.target_series` on the trading-time grid
    (gaps re-gridded and forward-filled exactly as for training), so a backtest scores
    predictions against the same y the models were trained on. ``y(t)`` needs bars
    t+1..t+horizon and is NaN where they are not in ``bars``. Units: log-price.
    """
    from bqx.features.pipeline import target_series

    parts = []
    for p, g in bars.groupby("pair", sort=False):
        y = target_series(
            g, str(p), horizon=horizon, target=target, interval=interval, max_ffill=max_ffill
        )
        parts.append(pd.DataFrame({"pair": p, "ts": y.index, "y_true": y.to_numpy()}))
    if not parts:
        return pd.DataFrame({"pair": [], "ts": pd.to_datetime([], utc=True), "y_true": []})
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True).dt.as_unit("ns")
    return out


def window_table(
    result: BacktestResult,
    predictions: pd.DataFrame,
    *,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> pd.DataFrame:
    """One row per walk-forward window: its test span, prediction quality and trading.

    ``predictions`` needs ``window, ts, prediction`` and ``y_true`` for R² and directional
    accuracy (optional ``train_start``/``train_end`` columns are carried through). Return
    and Sharpe are those of the portfolio equity inside the window's test span; trades are
    counted by entry time.
    """
    rows = []
    eq = result.equity["equity"]
    ts_all = pd.DatetimeIndex(eq.index)
    pts = pd.to_datetime(predictions["ts"], utc=True)
    for w, g in predictions.assign(_ts=pts).groupby("window", sort=True):
        start, end = g["_ts"].min(), g["_ts"].max()
        row: dict[str, Any] = {"window": w}
        for col in ("train_start", "train_end"):
            if col in g.columns:
                row[col] = g[col].iloc[0]
        row["test_start"], row["test_end"] = start, end
        if "y_true" in g.columns:
            pm = prediction_metrics(g["y_true"], g["prediction"])
            row["r2"], row["directional_accuracy"] = pm["r2"], pm["directional_accuracy"]
        row["predictions"] = len(g)
        inside = (ts_all >= start) & (ts_all <= end)
        seg = eq[inside]
        before = eq[ts_all < start]
        e0 = float(before.iloc[-1]) if len(before) else result.config.capital
        row["return"] = float(seg.iloc[-1] / e0 - 1.0) if len(seg) else float("nan")
        row["sharpe"] = (
            sharpe(daily_returns(seg, initial=e0), periods_per_year) if len(seg) else float("nan")
        )
        tr = result.trades
        sel = (tr["entry_ts"] >= start) & (tr["entry_ts"] <= end) & (tr["size"] > 0)
        row["trades"] = int(sel.sum())
        row["win_rate"] = float((tr.loc[sel, "net_pnl"] > 0).mean()) if sel.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
