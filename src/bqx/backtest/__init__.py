"""Backtesting (SPEC section 6): execution with costs, portfolio metrics, honest reports.

The public API fits on one screen::

    from bqx.backtest import BacktestConfig, run, write_report

    result = run(bars, signals, BacktestConfig(take_profit=0.01, stop_loss=0.005, horizon=60))
    metrics = result.metrics()            # portfolio, per pair, buy-and-hold, significance
    write_report(result, "out/")          # trades.csv, metrics.json, equity.parquet, report.html

* ``bars``: the canonical bar frame (``bqx.data.bars``), one or many pairs;
* ``signals``: ``pair, ts`` and ``signal`` (BUY/SELL/HOLD or +1/-1/0) and/or ``prediction``
  (turned into signals by :func:`bqx.signals.decide_many`); a signal at bar t fills at the
  next bar's open;
* walk-forward drivers pass their out-of-sample predictions (``pair, ts, prediction,
  y_true, window``) as ``signals`` to :func:`run` and as ``predictions`` to
  :func:`write_report`, which then adds the per-window table and the leakage checks.

Modules: :mod:`~bqx.backtest.engine` (execution, the rules and P&L convention in its
docstring), :mod:`~bqx.backtest.metrics` (definitions, N = 260 trading days a year),
:mod:`~bqx.backtest.report` (outputs).
"""

from bqx.backtest.engine import EXIT_REASONS, BacktestConfig, BacktestError, BacktestResult, run
from bqx.backtest.metrics import LeakageThresholds, compute_metrics, leakage_alarms
from bqx.backtest.report import ReportPaths, write_report

__all__ = [
    "EXIT_REASONS",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "LeakageThresholds",
    "ReportPaths",
    "compute_metrics",
    "leakage_alarms",
    "run",
    "write_report",
]
