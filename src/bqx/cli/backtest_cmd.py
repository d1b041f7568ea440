"""``bqx backtest``: trade a signal series (or, later, a walk-forward) and write a report.

Two modes share one execution model, metrics and report (SPEC section 6):

* ``--signals FILE`` (the research fast path): a CSV or Parquet file with ``pair, ts`` and
  ``signal`` (BUY/SELL/HOLD or 1/-1/0) and/or ``prediction`` (return units, turned into
  signals with the signals settings); optional ``y_true`` and ``window`` columns feed the
  prediction metrics and the per-window table, and ``max_notional`` caps the notional of the
  trade a row opens (empty = no cap; ``bqx paper export`` writes the risk manager's caps
  there). Bars come from the store.
* walk-forward (``--train-months/--test-months/--windows/--model/--reuse-predictions``;
  every run is recorded per prediction set and reported with a deflated Sharpe ratio over the
  variants tried, :mod:`bqx.backtest.variants`):
  retrains per window with the production training code; wired to the training pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bqx.cli._common import (
    JsonOpt,
    backend_option,
    console,
    err_console,
    handle_errors,
    model_option,
    print_json,
    progress_bar,
    settings,
    time_option,
)

if TYPE_CHECKING:
    import pandas as pd


def register(app: typer.Typer) -> None:
    """Add ``bqx backtest`` to the top-level app."""
    app.command("backtest")(backtest_cmd)


@handle_errors
def backtest_cmd(
    signals: Path | None = typer.Option(
        None,
        "--signals",
        help="CSV/Parquet with pair, ts and signal and/or prediction (optional max_notional: a "
        "per-trade cap): trade it without training.",
        dir_okay=False,
    ),
    pairs: str | None = typer.Option(
        None, help="Comma-separated pairs (default: all in the input)."
    ),
    start: str | None = typer.Option(
        None, help="First bar (UTC); default: first signal.", callback=time_option
    ),
    end: str | None = typer.Option(
        None, help="Last bar (UTC); default: last signal + horizon.", callback=time_option
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output directory (default: <home>/backtests/<UTC time>)."
    ),
    # execution (defaults: the [backtest] settings; see `bqx config show`)
    take_profit: float | None = typer.Option(
        None, help="Take-profit, fraction of entry; 0 = off. [default: backtest.take_profit, 0.01]"
    ),
    stop_loss: float | None = typer.Option(
        None, help="Stop-loss, fraction of entry; 0 = off. [default: backtest.stop_loss, 0.005]"
    ),
    horizon: int | None = typer.Option(
        None, help="Time-out in bars; 0 = off. [default: backtest.timeout_bars, else the horizon]"
    ),
    reverse: bool | None = typer.Option(
        None, "--reverse/--no-reverse", help="Reverse on opposite signal. [default: no]"
    ),
    spread_pips: float | None = typer.Option(
        None, help="Fixed bid-ask spread in pips. [default: the bars' spread column]"
    ),
    slippage_pips: float | None = typer.Option(None, help="Slippage per fill, pips. [default: 0]"),
    commission_per_million: float | None = typer.Option(
        None, help="Commission per side, account currency per million notional. [default: 0]"
    ),
    capital: float | None = typer.Option(None, help="Starting capital. [default: 100,000]"),
    sizing: str | None = typer.Option(None, help="fixed | kelly. [default: fixed]"),
    fraction: float | None = typer.Option(
        None, help="Fixed sizing: notional per position / balance. [default: 1.0]"
    ),
    kelly_fraction: float | None = typer.Option(
        None, help="Multiplier on the full Kelly leverage. [default: 0.25]"
    ),
    kelly_min_trades: int | None = typer.Option(
        None, help="Trades per pair before Kelly sizing starts. [default: 30]"
    ),
    max_leverage: float | None = typer.Option(
        None, help="Cap on total open notional / balance. [default: 10]"
    ),
    threshold: float | None = typer.Option(
        None, help="Signal threshold for predictions (default: the signals setting, 0.0005)."
    ),
    alarm_r2: float | None = typer.Option(
        None, help="Leakage alarm: out-of-sample R² above this. [default: 0.3]"
    ),
    alarm_accuracy: float | None = typer.Option(
        None, help="Leakage alarm: directional accuracy above this. [default: 0.6]"
    ),
    alarm_sharpe: float | None = typer.Option(
        None, help="Leakage alarm: net Sharpe above this. [default: 3]"
    ),
    # walk-forward: retrain per window with the production training code
    jobs: int | None = typer.Option(None, help="Walk-forward: windows trained in parallel."),
    backend: str = typer.Option(
        "local",
        help="Walk-forward: local (process pool) or ray (train.ray_address for a cluster).",
        callback=backend_option,
    ),
    train_months: int | None = typer.Option(
        None, min=1, help="Walk-forward: training months per window. [default: 6]"
    ),
    test_months: int | None = typer.Option(
        None, min=1, help="Walk-forward: test months per window. [default: 1]"
    ),
    windows: int | None = typer.Option(
        None, min=1, help="Walk-forward: number of windows. [default: 12]"
    ),
    model: str | None = typer.Option(
        None,
        help="Walk-forward: model (default: settings train.model = lgbm_rf; rf, lightgbm, ...).",
        callback=model_option,
    ),
    reuse_predictions: bool = typer.Option(
        False, "--reuse-predictions", help="Walk-forward: reuse cached out-of-sample predictions."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Backtest with realistic costs; write trades.csv, metrics.json, equity.parquet and a
    self-contained report.html. Without --signals: walk-forward (retrain per window with the
    production training code, predict the next month out of sample, trade it)."""
    from bqx.backtest.metrics import LeakageThresholds

    s = settings()
    bt = s.backtest.model_copy(
        update={
            k: v
            for k, v in {
                "take_profit": take_profit,
                "stop_loss": stop_loss,
                "timeout_bars": horizon,
                "reverse": reverse,
                "spread_pips": spread_pips,
                "slippage_pips": slippage_pips,
                "commission_per_million": commission_per_million,
                "capital": capital,
                "sizing": sizing,
                "fraction": fraction,
                "kelly_fraction": kelly_fraction,
                "kelly_min_trades": kelly_min_trades,
                "max_leverage": max_leverage,
                "alarm_r2": alarm_r2,
                "alarm_accuracy": alarm_accuracy,
                "alarm_sharpe": alarm_sharpe,
                "train_months": train_months,
                "test_months": test_months,
                "windows": windows,
            }.items()
            if v is not None
        }
    )
    cfg = backtest_config(bt, s.horizon)
    sig_settings = s.signals
    if threshold is not None:
        sig_settings = sig_settings.model_copy(update={"threshold": threshold})
    out_dir = out or (s.home / "backtests" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    windows_df = None
    wf_info: dict[str, Any] | None = None
    if signals is not None:
        frame = read_signals(signals, pairs)
    else:
        from bqx.backtest.walkforward import (
            WalkForwardConfig,
            ensure_features,
            walk_forward_predictions,
            windows_frame,
        )
        from bqx.universe import normalize_pairs

        plist = normalize_pairs(pairs)
        wcfg = WalkForwardConfig(
            train_months=bt.train_months, test_months=bt.test_months, windows=bt.windows,
            model=model or s.train.model,
        )  # fmt: skip
        if not reuse_predictions:
            with progress_bar("features", enabled=not as_json) as update:
                ensure_features(plist, s, progress=update, jobs=jobs or s.train.jobs)
        with progress_bar(f"walk-forward ({wcfg.model})", enabled=not as_json) as update:
            frame, wf_info = walk_forward_predictions(
                plist, s, wcfg, jobs=jobs, reuse=reuse_predictions, progress=update,
                backend=backend,
            )  # fmt: skip
        windows_df = windows_frame(frame)
    summary = run_signals_backtest(
        frame,
        cfg,
        out_dir=out_dir,
        settings=s,
        signal_settings=sig_settings,
        start=start,
        end=end,
        thresholds=LeakageThresholds(bt.alarm_r2, bt.alarm_accuracy, bt.alarm_sharpe),
        windows=windows_df,
    )
    if wf_info is not None:
        frame.to_parquet(Path(out_dir) / "predictions.parquet", index=False)
        summary["walk_forward"] = wf_info
        from bqx.backtest.variants import record_variant

        variant = {"backtest": cfg.as_dict(), "signals": sig_settings.model_dump(mode="json"),
                   "start": str(start), "end": str(end)}  # fmt: skip
        wf_info["variants"] = record_variant(s.home, wf_info["key"], variant, summary)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def backtest_config(bt: Any, horizon: int) -> Any:
    """:class:`~bqx.backtest.BacktestConfig` from the ``[backtest]`` settings (see
    :func:`bqx.backtest.engine.config_from_settings`; paper trading uses the same)."""
    from bqx.backtest.engine import config_from_settings

    return config_from_settings(bt, horizon)


def read_signals(path: Path, pairs: str | None = None) -> pd.DataFrame:
    """Read a signals/predictions file (csv or parquet) and keep the requested pairs."""
    import pandas as pd

    from bqx.errors import BqxError
    from bqx.universe import normalize_pair, normalize_pairs

    if not path.is_file():
        raise BqxError(f"signals file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt", ".gz"):
        raise BqxError(f"signals file {path} must be .csv or .parquet")
    try:
        df = pd.read_parquet(path) if suffix in (".parquet", ".pq") else pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        # pyarrow's errors are ValueError/OSError subclasses; binary junk as CSV is a
        # UnicodeDecodeError; an empty file is EmptyDataError (a ValueError)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BqxError(
            f"cannot read signals file {path}: {why}",
            hint="a CSV or Parquet file with columns pair, ts and signal and/or prediction",
        ) from e
    df.columns = [str(c).strip().lower() for c in df.columns]
    if not {"pair", "ts"} <= set(df.columns) or not ({"signal", "prediction"} & set(df.columns)):
        raise BqxError(
            f"{path} needs columns pair, ts and signal and/or prediction; has {list(df.columns)}"
        )
    df["pair"] = df["pair"].astype(str).map({p: normalize_pair(p) for p in df["pair"].unique()})
    df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.as_unit("ns")
    if pairs:
        df = df[df["pair"].isin(normalize_pairs(pairs))]
    if df.empty:
        raise BqxError(f"{path} has no rows for the requested pairs")
    return df.reset_index(drop=True)


def run_signals_backtest(
    frame: pd.DataFrame,
    cfg: Any,
    *,
    out_dir: Path,
    settings: Any,
    signal_settings: Any = None,
    start: Any = None,
    end: Any = None,
    thresholds: Any = None,
    windows: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Read bars for ``frame`` from the store, backtest, write the outputs; return a summary.

    The walk-forward driver calls this with its out-of-sample predictions frame
    (``pair, ts, prediction, y_true, window``).
    """
    import pandas as pd

    from bqx.backtest import run, write_report
    from bqx.backtest.metrics import realized_targets
    from bqx.calendar import to_utc
    from bqx.data.store import open_store
    from bqx.errors import NoDataError

    plist = sorted(frame["pair"].unique())
    t0 = time.perf_counter()
    lo = to_utc(start) if start else frame["ts"].min()
    pad = pd.Timedelta(settings.interval) * ((cfg.horizon or 0) + 1) + pd.Timedelta(days=4)
    hi = to_utc(end) if end else frame["ts"].max() + pad
    frame = frame[(frame["ts"] >= lo) & (frame["ts"] <= hi)]
    if frame.empty:
        raise NoDataError(f"no signals between {lo} and {hi}")
    store = open_store(settings=settings)
    try:
        bars = store.read(plist, lo, hi)
    finally:
        store.close()
    if bars.empty:
        raise NoDataError(
            f"no bars in the store for {', '.join(plist)} between {lo} and {hi}",
            hint="generate or ingest data first (bqx data generate / bqx data ingest)",
        )
    if not end:
        bars = _trim_after_last_signal(bars, frame, cfg.horizon)
    t_read = time.perf_counter() - t0

    t1 = time.perf_counter()
    result = run(bars, frame, cfg, signal_settings=signal_settings)
    t_run = time.perf_counter() - t1

    predictions = None
    if "prediction" in frame.columns:
        predictions = frame[["pair", "ts", "prediction"]].copy()
        for col in ("y_true", "window", "train_start", "train_end"):
            if col in frame.columns:
                predictions[col] = frame[col].to_numpy()
        if "y_true" not in predictions.columns:
            yt = realized_targets(
                bars,
                horizon=settings.horizon,
                target=settings.target,
                interval=settings.interval,
                max_ffill=settings.max_ffill_bars,
            )
            predictions = predictions.merge(yt, on=["pair", "ts"], how="left")
    t2 = time.perf_counter()
    paths = write_report(
        result,
        out_dir,
        predictions=predictions,
        windows=windows,
        thresholds=thresholds,
        title="BQX ML backtest",
    )
    t_report = time.perf_counter() - t2
    import json

    metrics = json.loads(paths.metrics_json.read_text())
    return {
        "out": paths.as_dict(),
        "bars": result.n_bars,
        "seconds": {
            "read": round(t_read, 3),
            "backtest": round(t_run, 3),
            "report": round(t_report, 3),
        },
        **{
            k: metrics.get(k)
            for k in (
                "period",
                "portfolio",
                "pairs",
                "buy_hold",
                "prediction",
                "leakage",
                "warnings",
            )
        },
        "conventions": metrics.get("conventions"),
    }


def _trim_after_last_signal(
    bars: pd.DataFrame, frame: pd.DataFrame, horizon: int | None
) -> pd.DataFrame:
    """Drop each pair's bars beyond its last signal + horizon + 1 (the last possible exit)."""
    if horizon is None:
        return bars
    last = frame.groupby("pair")["ts"].max()
    keep = []
    for p, g in bars.groupby("pair", sort=False):
        if p not in last.index:
            continue
        pos = int((g["ts"] <= last[p]).sum())  # bars up to and including the last signal
        keep.append(g.iloc[: pos + horizon + 1])
    import pandas as pd

    return pd.concat(keep, ignore_index=True) if keep else bars.iloc[:0]


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    port = summary["portfolio"] or {}
    bh = summary.get("buy_hold") or {}
    period = summary["period"]
    t = Table(
        title=f"backtest {str(period['start'])[:16]} .. {str(period['end'])[:16]} UTC",
        title_justify="left",
    )
    for i, col in enumerate(["", "trades", "win", "net P&L", "return", "Sharpe", "max DD", "B&H"]):
        t.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)

    def add(name: str, m: dict[str, Any], b: dict[str, Any] | None, style: str = "") -> None:
        t.add_row(
            name,
            f"{m.get('trades') or 0:,}",
            _pct(m.get("win_rate"), 0),
            _f(m.get("net_pnl"), 0),
            _pct(m.get("total_return")),
            _f(m.get("sharpe")),
            _pct(m.get("max_drawdown")),
            _pct((b or {}).get("total_return")),
            style=style,
        )

    for p, m in (summary.get("pairs") or {}).items():
        add(p, m, bh.get(p))
    add("portfolio", port, bh.get("portfolio"), style="bold")
    console.print(t)
    n = (summary.get("conventions") or {}).get("periods_per_year", 260)
    sig = port.get("significance") or {}
    ci = sig.get("sharpe_ci95") or [None, None]
    console.print(
        f"Sharpe from daily returns, N={n}: bootstrap 95% [{_f(ci[0])}, {_f(ci[1])}], "
        f"PSR {_pct(sig.get('psr'), 1)}, t {_f(sig.get('t_stat'))} "
        f"(p {_f(sig.get('p_value'), 4)}). Costs: spread {_f(port.get('spread_cost'), 0)}, "
        f"slippage {_f(port.get('slippage_cost'), 0)}, "
        f"commission {_f(port.get('commission'), 0)}."
    )
    var = (summary.get("walk_forward") or {}).get("variants")
    if var:
        console.print(
            f"{var['variants_tried']} variant(s) tried on these out-of-sample months: deflated "
            f"Sharpe {_pct(var['deflated_sharpe'], 1)} (the best unskilled variant would reach "
            f"Sharpe {_f(var['expected_max_sharpe'])})."
        )
    leak = summary.get("leakage") or {}
    if leak.get("alarm"):
        flagged = [c for c in leak.get("checks", []) if c["flagged"]]
        console.print(
            "[bold red]LEAKAGE ALARM[/bold red] (probable lookahead, see the report): "
            + "; ".join(
                f"{c['scope']} {c['metric']} {c['value']:.3g} > {c['threshold']}" for c in flagged
            )
        )
    for w in summary.get("warnings") or []:
        err_console.print(f"[yellow]warning:[/yellow] {w}")
    sec = summary["seconds"]
    console.print(f"{summary['bars']:,} bars backtested in {sec['backtest']:.2f}s")
    console.print(f"report: {summary['out']['report_html']}", soft_wrap=True)


def _pct(v: Any, digits: int = 2) -> str:
    return f"{v * 100:.{digits}f}%" if isinstance(v, int | float) else ""


def _f(v: Any, digits: int = 2) -> str:
    return f"{v:,.{digits}f}" if isinstance(v, int | float) else "n/a"
