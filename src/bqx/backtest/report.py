"""Backtest outputs: ``trades.csv``, ``metrics.json``, ``equity.parquet`` and ``report.html``.

The HTML report is one self-contained file (inline CSS, charts as inline base64 PNGs from
matplotlib's Agg backend, no scripts, no network) so it can be mailed, archived or opened
offline. Its sections: summary, **leakage alarm**, equity vs buy-and-hold, drawdown, monthly
returns, trade P&L distribution, per-pair table, per-window table (walk-forward), significance,
costs, configuration and conventions.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bqx.backtest.metrics import (
    PERIODS_PER_YEAR,
    LeakageThresholds,
    compute_metrics,
    daily_returns,
    leakage_checks,
    window_table,
)
from bqx.jsonutil import dumps

if TYPE_CHECKING:
    from bqx.backtest.engine import BacktestResult

__all__ = ["SECTIONS", "ReportPaths", "monthly_returns", "render_html", "to_json", "write_report"]

#: Section ids of the HTML report and their navigation labels (tests check they exist).
SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "leakage": "Leakage alarm",
    "equity": "Equity",
    "drawdown": "Drawdown",
    "monthly": "Monthly",
    "trades": "Trades",
    "pairs": "Per pair",
    "windows": "Windows",
    "significance": "Significance",
    "config": "Configuration",
}


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    trades_csv: Path
    metrics_json: Path
    equity_parquet: Path
    report_html: Path

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def write_report(
    result: BacktestResult,
    out_dir: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    predictions: pd.DataFrame | None = None,
    windows: pd.DataFrame | None = None,
    thresholds: LeakageThresholds | None = None,
    title: str = "Backtest report",
) -> ReportPaths:
    """Write the four outputs into ``out_dir`` (created) and return their paths.

    ``predictions`` (``pair, ts, prediction, y_true`` and optionally ``window``) feeds the
    prediction metrics, the per-window table and the leakage alarm; ``windows`` can be given
    ready-made instead (see :func:`bqx.backtest.metrics.window_table`). The returned metrics
    (also in ``metrics.json``) gain ``leakage`` and ``windows`` entries.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if predictions is None and result.signals is not None and "y_true" in result.signals:
        predictions = result.signals
    m = metrics if metrics is not None else compute_metrics(result, predictions=predictions)
    if windows is None and predictions is not None and "window" in predictions.columns:
        windows = window_table(result, predictions)
    checks = leakage_checks(m, windows, thresholds)
    m = dict(m)
    th = thresholds or LeakageThresholds()
    m["leakage"] = {
        "thresholds": {
            "r2": th.r2,
            "directional_accuracy": th.directional_accuracy,
            "sharpe": th.sharpe,
        },
        "alarm": any(c["flagged"] for c in checks),
        "checks": checks,
    }
    if windows is not None:
        m["windows"] = windows.to_dict("records")

    paths = ReportPaths(
        out_dir=out,
        trades_csv=out / "trades.csv",
        metrics_json=out / "metrics.json",
        equity_parquet=out / "equity.parquet",
        report_html=out / "report.html",
    )
    result.trades.to_csv(paths.trades_csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    paths.metrics_json.write_text(to_json(m), encoding="utf-8")
    eq = result.equity.copy()
    eq["drawdown"] = eq["equity"] / eq["equity"].cummax() - 1.0
    eq.reset_index().to_parquet(paths.equity_parquet, index=False)
    paths.report_html.write_text(
        render_html(result, m, windows=windows, title=title), encoding="utf-8"
    )
    return paths


def to_json(obj: Any) -> str:
    """JSON with timestamps as ISO strings and NaN/inf as null."""
    return dumps(obj)


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------
_METRIC_LABELS = {
    "sharpe": "net Sharpe",
    "r2": "R²",
    "directional_accuracy": "directional accuracy",
}

_CSS = """
:root{--ink:#1d2733;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f6f8fb;--card:#fff;
--accent:#1f5fbf;--good:#15803d;--bad:#b91c1c;--warn:#b45309}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#14213d;color:#fff;padding:26px 40px 22px}
header h1{margin:0 0 4px;font-size:24px;font-weight:600;letter-spacing:.2px}
header .sub{color:#c7d2e4;font-size:13px}
nav{background:#fff;border-bottom:1px solid var(--line);padding:8px 40px;position:sticky;top:0;z-index:2}
nav a{color:var(--muted);text-decoration:none;margin-right:18px;font-size:13px}
nav a:hover{color:var(--accent)}
main{max-width:1180px;margin:0 auto;padding:24px 40px 60px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:20px 24px;margin:0 0 22px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
h2{font-size:17px;margin:0 0 14px;font-weight:600}
h3{font-size:14px;margin:18px 0 8px;color:var(--muted);font-weight:600}
p.note{color:var(--muted);font-size:12.5px;margin:8px 0 0}
.kpis{display:grid;grid-template-columns:repeat(5,1fr);gap:12px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fbfcfe}
.kpi .v{font-size:21px;font-weight:600;margin-top:2px;font-variant-numeric:tabular-nums}
.kpi .k{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.5px}
.kpi .s{font-size:11.5px;color:var(--muted)}
.pos{color:var(--good)}.neg{color:var(--bad)}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#f1f4f9;color:var(--muted);font-weight:600;font-size:12px}
th:first-child,td:first-child{text-align:left}
tbody tr:hover{background:#f8fafd}
.scroll{overflow-x:auto}
img.chart{width:100%;height:auto;display:block;border-radius:4px}
.alarm{border-radius:8px;padding:14px 16px;margin-bottom:14px;font-size:14px}
.alarm.ok{background:#ecfdf3;border:1px solid #a6e4bf;color:#14532d}
.alarm.bad{background:#fef2f2;border:1px solid #f5a8a8;color:#7f1d1d}
.alarm strong{font-size:15px}
.flag{font-weight:600;color:var(--bad)}
.okflag{color:var(--good)}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:22px}
.heat td{text-align:center;min-width:54px}
.warn{background:#fff7ed;border:1px solid #fcd9b6;color:#7c2d12;border-radius:8px;
padding:10px 14px;font-size:13px}
dl.cfg{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0;font-size:13px}
dl.cfg dt{color:var(--muted)}dl.cfg dd{margin:0;font-variant-numeric:tabular-nums}
details{margin-top:10px}summary{cursor:pointer;color:var(--muted);font-size:13px;margin-bottom:6px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px 0 30px}
@media (max-width:900px){.kpis{grid-template-columns:repeat(2,1fr)}.grid2{grid-template-columns:1fr}
main{padding:16px}header,nav{padding-left:16px;padding-right:16px}}
@media print{nav{display:none}section{break-inside:avoid}}
"""


def render_html(
    result: BacktestResult,
    metrics: dict[str, Any],
    *,
    windows: pd.DataFrame | None = None,
    title: str = "Backtest report",
) -> str:
    """The self-contained report page as a string (see the module doc)."""
    from bqx import __version__

    port = metrics["portfolio"]
    conv = metrics.get("conventions", {})
    n_per_year = conv.get("periods_per_year", PERIODS_PER_YEAR)
    period = metrics.get("period", {})
    pairs = ", ".join(result.pairs)
    start, end = period.get("start"), period.get("end")
    sub = (
        f"{html.escape(pairs)} &middot; {_fmt_ts(start)} &rarr; {_fmt_ts(end)} &middot; "
        f"{result.n_bars:,} bars &middot; capital {result.config.capital:,.0f}"
    )
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1><div class='sub'>{sub}</div></header>",
        "<nav>"
        + "".join(f'<a href="#{sid}">{label}</a>' for sid, label in SECTIONS.items())
        + "</nav><main>",
        _summary(port, n_per_year),
        _leakage(metrics.get("leakage", {})),
        _equity_section(result),
        _drawdown_section(result, port),
        _monthly_section(result),
        _trades_section(result, port),
        _pairs_section(result, metrics),
        _windows_section(windows),
        _significance_section(metrics, n_per_year),
        _config_section(result, metrics),
        f"<footer>BQX ML {html.escape(__version__)} &middot; generated "
        f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC &middot; self-contained "
        "report (no network needed)</footer></main></body></html>",
    ]
    return "\n".join(parts)


def _summary(port: dict[str, Any], n: int) -> str:
    # annualising a few weeks into a CAGR gives absurd numbers: show it from half a year on
    long_enough = (port.get("trading_days") or 0) >= n // 2
    cagr = _pct(port.get("cagr")) if long_enough else "n/a"
    calmar = _num(port.get("calmar")) if long_enough else "n/a"
    short = "period under 6 months" if not long_enough else ""
    recovered = port.get("max_drawdown_recovery") is not None
    dd_sub = (
        f"{_num(port.get('max_drawdown_duration_days'), 1)} days peak to recovery"
        if recovered
        else "not recovered"
        if (port.get("max_drawdown") or 0) < 0
        else "none"
    )
    cards = [
        ("Net return", _pct(port.get("total_return")), f"CAGR {cagr}", port.get("total_return")),
        ("Sharpe", _num(port.get("sharpe")), f"daily, N = {n}", port.get("sharpe")),
        ("Sortino", _num(port.get("sortino")), "downside deviation", port.get("sortino")),
        ("Max drawdown", _pct(port.get("max_drawdown")), dd_sub, -1.0),
        ("Calmar", calmar, short or "CAGR / |max DD|", port.get("calmar") if long_enough else None),
        ("Trades", f"{port.get('trades', 0):,}",
         f"{port.get('long_trades', 0):,} long / {port.get('short_trades', 0):,} short", None),
        ("Win rate", _pct(port.get("win_rate"), 1), f"avg {_money(port.get('avg_trade'))}", None),
        ("Profit factor", _num(port.get("profit_factor")), "gross wins / gross losses",
         (port.get("profit_factor") or 0) - 1),
        ("Exposure", _pct(port.get("exposure"), 1),
         f"avg leverage {_num(port.get('avg_leverage'))}x", None),
        ("Volatility", _pct(port.get("volatility"), 1), "annualised", None),
    ]  # fmt: skip
    html_cards = "".join(
        f"<div class='kpi'><div class='k'>{k}</div><div class='v {_sign_class(sgn)}'>{v}</div>"
        f"<div class='s'>{s}</div></div>"
        for k, v, s, sgn in cards
    )
    return (
        "<section id='summary'><h2>Summary</h2>"
        f"<div class='kpis'>{html_cards}</div>"
        "<p class='note'>Net of spread, slippage and commission. Ratios from daily returns on "
        f"FX trading days (a day ends at 17:00 New York), annualised with N = {n}; "
        "risk-free rate 0.</p></section>"
    )


def _leakage(leak: dict[str, Any]) -> str:
    checks = leak.get("checks", [])
    th = leak.get("thresholds", {})
    flagged = [c for c in checks if c["flagged"]]
    if flagged:
        head = (
            "<div class='alarm bad'><strong>&#9888; Leakage alarm: "
            f"{len(flagged)} result(s) are too good to be true for FX.</strong><br>"
            "Treat this as a probable lookahead bug (a feature or label that uses the future, "
            "a missing purge gap, a signal executed on its own bar) until it is explained. "
            "Simulated data with a planted signal can legitimately trip it.</div>"
        )
    else:
        head = (
            "<div class='alarm ok'><strong>&#10003; No leakage alarm.</strong> "
            "Every checked result is below its threshold.</div>"
        )
    th_line = (
        f"Thresholds: out-of-sample R&sup2; &gt; {th.get('r2', 0.3)}, directional accuracy "
        f"&gt; {th.get('directional_accuracy', 0.6)}, net Sharpe &gt; {th.get('sharpe', 3.0)}."
    )
    head_row = (
        "<thead><tr><th>Scope</th><th>Metric</th><th>Value</th><th>Threshold</th>"
        "<th>Status</th></tr></thead>"
    )

    def rows(items: list[dict[str, Any]]) -> str:
        return "".join(
            f"<tr><td>{html.escape(str(c['scope']))}</td>"
            f"<td>{html.escape(_METRIC_LABELS.get(c['metric'], c['metric']))}</td>"
            f"<td>{_num(c['value'], 3)}</td><td>{_num(c['threshold'], 2)}</td>"
            + ("<td class='flag'>FLAGGED</td>" if c["flagged"] else "<td class='okflag'>ok</td>")
            + "</tr>"
            for c in items
        )

    ok = [c for c in checks if not c["flagged"]]
    body = ""
    if flagged:
        body += f"<div class='scroll'><table>{head_row}<tbody>{rows(flagged)}</tbody></table></div>"
    if ok:
        body += (
            f"<details{'' if flagged else ' open'}><summary>{len(ok)} check(s) below their "
            f"threshold</summary><div class='scroll'><table>{head_row}<tbody>{rows(ok)}</tbody>"
            "</table></div></details>"
        )
    no_pred = (
        ""
        if any(c["metric"] == "r2" for c in checks)
        else (
            "<p class='note'>No out-of-sample targets were supplied, so R&sup2; and directional "
            "accuracy were not checked.</p>"
        )
    )
    return (
        f"<section id='leakage'><h2>Leakage alarm</h2>{head}{body}"
        f"<p class='note'>{th_line}</p>{no_pred}</section>"
    )


def _equity_section(result: BacktestResult) -> str:
    eq = _decimate(result.equity[["equity", "buy_hold"]])
    cap = result.config.capital

    def draw(ax: Any) -> None:
        ax.plot(eq.index, eq["equity"] / cap, color="#1f5fbf", lw=1.4, label="Strategy (net)")
        ax.plot(
            eq.index,
            eq["buy_hold"] / cap,
            color="#9aa5b1",
            lw=1.1,
            label="Buy & hold (equal weight)",
        )
        ax.axhline(1.0, color="#c9d1db", lw=0.8, zorder=0)
        ax.set_ylabel("equity / capital")
        ax.legend(loc="upper left", frameon=False)

    return (
        "<section id='equity'><h2>Equity curve vs buy-and-hold</h2>"
        f"{_img(_chart(draw, height=3.6))}"
        "<p class='note'>Marked to market at every bar close (open positions at the close mid, "
        "entry costs paid). Buy-and-hold: long each pair with the full capital from its first "
        "open, no costs, equal weight across pairs.</p></section>"
    )


def _drawdown_section(result: BacktestResult, port: dict[str, Any]) -> str:
    e = result.equity["equity"]
    dd = _decimate((e / e.cummax() - 1.0).to_frame("dd"), how="min")

    def draw(ax: Any) -> None:
        ax.fill_between(dd.index, dd["dd"] * 100, 0, color="#b91c1c", alpha=0.25, lw=0)
        ax.plot(dd.index, dd["dd"] * 100, color="#b91c1c", lw=0.9)
        ax.set_ylabel("drawdown, %")

    info = (
        f"Max drawdown {_pct(port.get('max_drawdown'))} from {_fmt_ts(port.get('max_drawdown_peak'))}"
        f" to {_fmt_ts(port.get('max_drawdown_trough'))}; "
        + (
            f"recovered {_fmt_ts(port.get('max_drawdown_recovery'))}"
            if port.get("max_drawdown_recovery") is not None
            else "not recovered by the end"
        )
        + f" ({_num(port.get('max_drawdown_duration_days'), 1)} days peak to recovery). "
        f"Longest time under water: {_num(port.get('longest_drawdown_days'), 1)} days."
    )
    return (
        f"<section id='drawdown'><h2>Drawdown</h2>{_img(_chart(draw, height=2.4))}"
        f"<p class='note'>{info}</p></section>"
    )


def _monthly_section(result: BacktestResult) -> str:
    table = monthly_returns(result.equity["equity"], result.config.capital)
    if table.empty:
        return (
            "<section id='monthly'><h2>Monthly returns</h2><p class='note'>No data.</p></section>"
        )
    vmax = float(np.nanmax(np.abs(table.drop(columns="Year").to_numpy()))) or 1.0
    head = "".join(f"<th>{c}</th>" for c in ["", *table.columns])
    rows = []
    for year, r in table.iterrows():
        cells = []
        for col in table.columns:
            v = r[col]
            if not np.isfinite(v):
                cells.append("<td></td>")
                continue
            style = _heat(v, vmax) if col != "Year" else "font-weight:600"
            cells.append(f"<td style='{style}'>{v * 100:+.2f}%</td>")
        rows.append(f"<tr><td><b>{year}</b></td>{''.join(cells)}</tr>")
    return (
        "<section id='monthly'><h2>Monthly returns</h2><div class='scroll'>"
        f"<table class='heat'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></div><p class='note'>Months of FX trading days; net returns of the portfolio "
        "equity, compounded within the year for the Year column.</p></section>"
    )


def monthly_returns(equity: pd.Series, initial: float) -> pd.DataFrame:
    """Year x month table of monthly returns (fractions) plus a compounded ``Year`` column."""
    d = daily_returns(equity, initial=initial)
    if d.empty:
        return pd.DataFrame()
    idx = pd.DatetimeIndex(d.index)
    g = (1.0 + d).groupby([idx.year, idx.month]).prod() - 1.0
    table = g.unstack(level=1)
    table = table.reindex(columns=range(1, 13))
    table.columns = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]  # fmt: skip
    table["Year"] = (1.0 + d).groupby(idx.year).prod().to_numpy() - 1.0
    table.index.name = None
    return table


def _trades_section(result: BacktestResult, port: dict[str, Any]) -> str:
    t = result.trades[result.trades["size"] > 0]
    if t.empty:
        return "<section id='trades'><h2>Trades</h2><p class='note'>No trades.</p></section>"
    r = t["return"].to_numpy() * 1e4  # basis points of notional

    def draw(ax: Any) -> None:
        lo, hi = np.percentile(r, [0.5, 99.5])
        span = max(hi - lo, 1e-9)
        bins = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 60)
        ax.hist(np.clip(r, bins[0], bins[-1])[r > 0], bins=bins, color="#15803d", alpha=0.8)
        ax.hist(np.clip(r, bins[0], bins[-1])[r <= 0], bins=bins, color="#b91c1c", alpha=0.8)
        ax.axvline(0, color="#1d2733", lw=0.8)
        ax.axvline(
            float(np.mean(r)), color="#1f5fbf", lw=1.2, ls="--", label=f"mean {np.mean(r):+.2f} bp"
        )
        ax.set_xlabel("net return per trade, basis points of notional")
        ax.set_ylabel("trades")
        ax.legend(frameon=False)

    reasons = t["exit_reason"].value_counts()
    by_reason = t.groupby("exit_reason").agg(
        trades=("net_pnl", "size"),
        win_rate=("net_pnl", lambda x: float((x > 0).mean())),
        avg_return=("return", "mean"),
        net_pnl=("net_pnl", "sum"),
        bars=("bars_held", "mean"),
    )
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{int(v['trades']):,}</td>"
        f"<td>{_pct(v['win_rate'], 1)}</td><td>{v['avg_return'] * 1e4:+.2f}</td>"
        f"<td>{_money(v['net_pnl'])}</td><td>{v['bars']:.1f}</td></tr>"
        for k, v in by_reason.loc[reasons.index].iterrows()
    )
    costs = (
        f"<tr><td>Gross P&amp;L</td><td>{_money(port.get('gross_pnl'))}</td></tr>"
        f"<tr><td>Spread</td><td>{_money(-(port.get('spread_cost') or 0))}</td></tr>"
        f"<tr><td>Slippage</td><td>{_money(-(port.get('slippage_cost') or 0))}</td></tr>"
        f"<tr><td>Commission</td><td>{_money(-(port.get('commission') or 0))}</td></tr>"
        f"<tr><td><b>Net P&amp;L</b></td><td><b>{_money(port.get('net_pnl'))}</b></td></tr>"
    )
    skipped = port.get("skipped_trades", 0)
    note_skipped = (
        f" {skipped:,} signalled trades were sized to zero (negative Kelly or no leverage "
        "room) and are excluded here (they are in trades.csv with size 0)."
        if skipped
        else ""
    )
    return (
        "<section id='trades'><h2>Trade P&amp;L distribution</h2>"
        f"{_img(_chart(draw, height=2.8))}"
        "<div class='grid2'><div><h3>By exit reason</h3><table><thead><tr><th>Exit</th>"
        "<th>Trades</th><th>Win rate</th><th>Avg bp</th><th>Net P&amp;L</th><th>Avg bars</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
        "<div><h3>Costs</h3><table><thead><tr><th>Component</th><th>Account currency</th>"
        f"</tr></thead><tbody>{costs}</tbody></table></div></div>"
        f"<p class='note'>Executed trades only (size &gt; 0).{note_skipped}</p></section>"
    )


def _pairs_section(result: BacktestResult, metrics: dict[str, Any]) -> str:
    head = (
        "<tr><th>Pair</th><th>Trades</th><th>Win rate</th><th>Profit factor</th>"
        "<th>Net P&amp;L</th><th>Return</th><th>Sharpe</th><th>Max DD</th><th>Exposure</th>"
        "<th>B&amp;H return</th><th>B&amp;H Sharpe</th></tr>"
    )
    rows = []
    for p in result.pairs:
        m = metrics["pairs"].get(p, {})
        bh = metrics.get("buy_hold", {}).get(p, {})
        rows.append(
            f"<tr><td><b>{p}</b></td><td>{m.get('trades', 0):,}</td>"
            f"<td>{_pct(m.get('win_rate'), 1)}</td><td>{_num(m.get('profit_factor'))}</td>"
            f"<td class='{_sign_class(m.get('net_pnl'))}'>{_money(m.get('net_pnl'))}</td>"
            f"<td class='{_sign_class(m.get('total_return'))}'>{_pct(m.get('total_return'))}</td>"
            f"<td>{_num(m.get('sharpe'))}</td><td>{_pct(m.get('max_drawdown'))}</td>"
            f"<td>{_pct(m.get('exposure'), 1)}</td><td>{_pct(bh.get('total_return'))}</td>"
            f"<td>{_num(bh.get('sharpe'))}</td></tr>"
        )
    port = metrics["portfolio"]
    bhp = metrics.get("buy_hold", {}).get("portfolio", {})
    rows.append(
        f"<tr style='background:#f1f4f9'><td><b>Portfolio</b></td><td>{port.get('trades', 0):,}</td>"
        f"<td>{_pct(port.get('win_rate'), 1)}</td><td>{_num(port.get('profit_factor'))}</td>"
        f"<td>{_money(port.get('net_pnl'))}</td><td>{_pct(port.get('total_return'))}</td>"
        f"<td>{_num(port.get('sharpe'))}</td><td>{_pct(port.get('max_drawdown'))}</td>"
        f"<td>{_pct(port.get('exposure'), 1)}</td><td>{_pct(bhp.get('total_return'))}</td>"
        f"<td>{_num(bhp.get('sharpe'))}</td></tr>"
    )
    pred = metrics.get("prediction")
    pred_html = ""
    if pred:
        prow = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{int(v['n']):,}</td><td>{_num(v['r2'], 4)}</td>"
            f"<td>{_pct(v['directional_accuracy'], 1)}</td></tr>"
            for k, v in pred.items()
        )
        pred_html = (
            "<h3>Out-of-sample prediction quality</h3><table><thead><tr><th>Scope</th>"
            "<th>Predictions</th><th>R&sup2;</th><th>Directional accuracy</th></tr></thead>"
            f"<tbody>{prow}</tbody></table>"
        )
    return (
        "<section id='pairs'><h2>Per pair</h2><div class='scroll'><table>"
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>{pred_html}"
        "<p class='note'>A pair's return, Sharpe and drawdown are those of its contribution "
        "(capital + the pair's cumulative P&amp;L). Buy-and-hold per pair: long on the full "
        "capital, no costs.</p></section>"
    )


def _windows_section(windows: pd.DataFrame | None) -> str:
    if windows is None or windows.empty:
        return (
            "<section id='windows'><h2>Walk-forward windows</h2><p class='note'>No windows: "
            "this run traded a given signal series (no per-window retraining).</p></section>"
        )
    cols = list(windows.columns)
    labels = {"r2": "R²", "sharpe": "Sharpe", "directional_accuracy": "directional accuracy"}
    head = "".join(
        f"<th>{html.escape(labels.get(str(c), str(c).replace('_', ' ')))}</th>" for c in cols
    )
    body = []
    for r in windows.to_dict("records"):
        cells = []
        for c in cols:
            v = r[c]
            if c in ("return", "win_rate", "directional_accuracy"):
                s = _pct(v, 1 if c != "return" else 2)
            elif c in ("r2", "sharpe"):
                s = _num(v, 4 if c == "r2" else 2)
            elif isinstance(v, pd.Timestamp | datetime):
                s = _fmt_ts(v)
            elif c in ("predictions", "trades") and isinstance(v, int | np.integer):
                s = f"{int(v):,}"
            else:
                s = html.escape(str(v))
            cells.append(f"<td>{s}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<section id='windows'><h2>Walk-forward windows</h2><div class='scroll'><table>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        "<p class='note'>Each window's model is trained on data before its test span only; "
        "return and Sharpe are the portfolio's inside the test span.</p></section>"
    )


def _significance_section(metrics: dict[str, Any], n: int) -> str:
    port = metrics["portfolio"]
    sig = port.get("significance", {})
    ci = sig.get("sharpe_ci95") or [float("nan"), float("nan")]
    rows = [
        ("Trading days", f"{port.get('trading_days', 0):,}"),
        (f"Sharpe (annualised, N = {n})", _num(port.get("sharpe"))),
        ("Bootstrap 95 % interval of Sharpe", f"[{_num(ci[0])}, {_num(ci[1])}]"),
        ("t-statistic of daily returns", _num(sig.get("t_stat"))),
        ("p-value (two-sided / one-sided &gt; 0)",
         f"{_num(sig.get('p_value'), 4)} / {_num(sig.get('p_value_one_sided'), 4)}"),
        ("Probabilistic Sharpe ratio vs 0", _pct(sig.get("psr"), 1)),
        ("Skewness / kurtosis of daily returns",
         f"{_num(sig.get('skew'))} / {_num(sig.get('kurtosis'))}"),
        ("Best / worst day", f"{_pct(port.get('best_day'))} / {_pct(port.get('worst_day'))}"),
    ]  # fmt: skip
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    psr = sig.get("psr")
    verdict = (
        "The daily returns are significantly positive at the 5 % level."
        if isinstance(psr, float) and psr > 0.95 and (sig.get("p_value_one_sided") or 1) < 0.05
        else "The daily returns are not significantly positive at the 5 % level."
    )
    return (
        "<section id='significance'><h2>Significance</h2><table><thead><tr><th>Statistic</th>"
        f"<th>Value</th></tr></thead><tbody>{body}</tbody></table><p class='note'>{verdict} "
        "Bootstrap: iid resampling of days, seeded. PSR (Bailey &amp; L&oacute;pez de Prado) "
        "adjusts for skewness and kurtosis; it is the probability that the true Sharpe ratio "
        "exceeds 0.</p></section>"
    )


def _config_section(result: BacktestResult, metrics: dict[str, Any]) -> str:
    cfg = result.config.as_dict()
    labels = {
        "take_profit": "Take-profit (fraction of entry)",
        "stop_loss": "Stop-loss (fraction of entry)",
        "horizon": "Time-out (bars)",
        "reverse": "Reverse on opposite signal",
        "spread_pips": "Fixed spread (pips; empty = from data)",
        "slippage_pips": "Slippage per fill (pips)",
        "commission": "Commission per side (fraction of value)",
        "capital": "Capital",
        "sizing": "Sizing",
        "fraction": "Fixed fraction (notional / balance)",
        "kelly_fraction": "Kelly multiplier",
        "kelly_min_trades": "Kelly warm-up (trades)",
        "max_leverage": "Leverage cap (open notional / balance)",
    }
    dl = "".join(
        f"<dt>{html.escape(labels.get(k, k))}</dt><dd>{html.escape(_plain(v))}</dd>"
        for k, v in cfg.items()
    )
    conv = metrics.get("conventions", {})
    cl = "".join(
        f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in conv.items()
    )
    warns = metrics.get("warnings") or []
    warn_html = (
        "<div class='warn'><b>Warnings</b><ul>"
        + "".join(f"<li>{html.escape(w)}</li>" for w in warns)
        + "</ul></div>"
        if warns
        else ""
    )
    return (
        "<section id='config'><h2>Configuration and conventions</h2>"
        f"{warn_html}<div class='grid2'><div><h3>Execution</h3><dl class='cfg'>{dl}</dl></div>"
        f"<div><h3>Conventions</h3><dl class='cfg'>{cl}</dl></div></div>"
        "<p class='note'>Signals stamped at bar t are decided at its close and filled at the "
        "next bar's open; take-profit/stop-loss are checked on mid high/low from the entry bar, "
        "a bar reaching both is a stop, a gap through a level fills at the open.</p></section>"
    )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _chart(draw: Any, height: float = 3.2) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    with plt.rc_context(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.edgecolor": "#c9d1db",
            "axes.grid": True,
            "axes.axisbelow": True,
            "grid.color": "#eef1f5",
            "grid.linewidth": 0.8,
            "xtick.color": "#5f6b7a",
            "ytick.color": "#5f6b7a",
            "axes.labelcolor": "#5f6b7a",
        }
    ):
        fig, ax = plt.subplots(figsize=(11, height), dpi=110)
        draw(ax)
        if isinstance(ax.xaxis.get_major_locator(), mdates.AutoDateLocator):
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str) -> str:
    return f"<img class='chart' alt='chart' src='data:image/png;base64,{b64}'>"


def _decimate(frame: pd.DataFrame, max_points: int = 3000, how: str = "last") -> pd.DataFrame:
    """At most ``max_points`` rows for plotting (bucket last or min), index as naive UTC."""
    f = frame
    if len(f) > max_points:
        k = math.ceil(len(f) / max_points)
        key = np.arange(len(f)) // k
        g = f.groupby(key)
        f = g.min() if how == "min" else g.last()
        f.index = frame.index[np.minimum(np.arange(len(f)) * k + k - 1, len(frame) - 1)]
    idx = pd.DatetimeIndex(f.index)
    f = f.copy()
    f.index = idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx
    return f


def _heat(v: float, vmax: float) -> str:
    a = min(abs(v) / vmax, 1.0) * 0.75 + 0.05
    rgb = "21,128,61" if v > 0 else "185,28,28"
    return f"background:rgba({rgb},{a:.2f});color:{'#fff' if a > 0.45 else '#1d2733'}"


def _sign_class(v: Any) -> str:
    if isinstance(v, int | float) and math.isfinite(v) and v != 0:
        return "pos" if v > 0 else "neg"
    return ""


def _finite(v: Any) -> bool:
    return isinstance(v, int | float | np.floating) and math.isfinite(float(v))


def _pct(v: Any, digits: int = 2) -> str:
    return f"{float(v) * 100:.{digits}f}%" if _finite(v) else "&ndash;"


def _num(v: Any, digits: int = 2) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "&infin;"
    return f"{float(v):,.{digits}f}" if _finite(v) else "&ndash;"


def _money(v: Any) -> str:
    return f"{float(v):,.2f}" if _finite(v) else "&ndash;"


def _fmt_ts(v: Any) -> str:
    if v is None or v is pd.NaT:
        return "&ndash;"
    try:
        return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return html.escape(str(v))


def _plain(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
