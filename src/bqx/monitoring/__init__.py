"""Monitoring: realised targets for served decisions, live quality, drift, alerts.

Public API (for the operator / rollout code)::

    run_pass(settings, *, now=None) -> dict          # one pass: mature, drift, quality,
                                                     # alerts, purge (bqx monitor run)
    mature(state, bars, settings, *, now=None) -> MatureReport   # fill realized_target
    drift_report(state, registry, pair, *, now=None, cfg=DriftConfig()) -> dict
    quality_report(state, pair, *, reference=None, windows=("1D", "7D"), now=None) -> dict
    load_baseline(registry, pair, version) -> dict   # frozen training reference

Data flows one way: the decision log (state DB) + the bar store -> monitoring.
"""

from __future__ import annotations

from bqx.monitoring.baseline import BaselineMissingError, load_baseline
from bqx.monitoring.drift import DriftConfig, drift_report
from bqx.monitoring.mature import MatureReport, mature
from bqx.monitoring.quality import quality_report
from bqx.monitoring.run import monitor_reports, run_pass

__all__ = [
    "BaselineMissingError",
    "DriftConfig",
    "MatureReport",
    "drift_report",
    "load_baseline",
    "mature",
    "monitor_reports",
    "quality_report",
    "run_pass",
]
