"""Monitoring: matured outcomes, drift, live quality and alerts (issue 12).

Python API for other packages (e.g. the operator loop):

* :func:`bqx.monitoring.mature.mature` (state, store) -> :class:`MatureResult`
* :func:`bqx.monitoring.drift.build_baseline` / :func:`drift_report` (baseline, window)
* :func:`bqx.monitoring.quality.quality_report` (decisions frame, test_metrics=...)
* :class:`bqx.monitoring.alerts.AlertManager` (state, notifiers).evaluate([Condition...])
"""

from bqx.monitoring.alerts import AlertManager, Condition
from bqx.monitoring.drift import build_baseline, column_baseline, column_drift, drift_report
from bqx.monitoring.mature import MatureResult, mature, mature_frame
from bqx.monitoring.notifiers import LogNotifier, SmtpNotifier, WebhookNotifier
from bqx.monitoring.quality import quality_report, r2_drop_verdict

__all__ = [
    "AlertManager",
    "Condition",
    "LogNotifier",
    "MatureResult",
    "SmtpNotifier",
    "WebhookNotifier",
    "build_baseline",
    "column_baseline",
    "column_drift",
    "drift_report",
    "mature",
    "mature_frame",
    "quality_report",
    "r2_drop_verdict",
]
