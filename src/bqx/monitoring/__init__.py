"""Monitoring: matured outcomes, drift, live quality and alerts (issue 12).

Python API for other packages (e.g. the operator loop):

* :func:`bqx.monitoring.mature.mature` (state, store) -> :class:`MatureResult`
* :func:`bqx.monitoring.drift.build_baseline` / :func:`drift_report` (baseline, window)
* :func:`bqx.monitoring.quality.quality_report` (decisions frame, test_metrics=...)
* :class:`bqx.monitoring.alerts.AlertManager` (state, notifiers).evaluate([Condition...])
* :func:`run_once` (settings): one whole pass (what ``bqx monitor run`` and the operator's
  monitoring task run)
"""

from typing import Any

import pandas as pd

from bqx.monitoring.alerts import AlertManager, Condition
from bqx.monitoring.drift import build_baseline, column_baseline, column_drift, drift_report
from bqx.monitoring.mature import MatureResult, mature, mature_frame
from bqx.monitoring.notifiers import LogNotifier, SmtpNotifier, WebhookNotifier
from bqx.monitoring.quality import quality_report, r2_drop_verdict


def run_once(settings: Any, now: Any = None) -> dict[str, Any]:
    """One monitoring pass over the stores named by ``settings``: maturing, live quality,
    alert rules (:func:`bqx.monitoring.run.run_pass`). The operator (``bqx ops run``) calls
    it every ``ops.monitor_every_s``. ``now`` (default: the clock) ends the live windows:
    set it to look at a replayed or historical period."""
    from bqx.data.store import open_store
    from bqx.monitoring.run import run_pass
    from bqx.registry import Registry
    from bqx.state import open_state

    days = settings.monitor.capture_retention_days
    try:
        store = open_store(settings=settings)
        try:
            return run_pass(
                open_state(settings),
                store,
                Registry(settings),
                now=now,
                retention=pd.Timedelta(days=days),
                monitor=settings.monitor,
                baseline_cache=settings.home / "cache" / "monitoring-baselines",
            )
        finally:
            store.close()
    except Exception as e:
        _alert_pass_failure(settings, e)
        raise


def _alert_pass_failure(settings: Any, e: Exception) -> None:
    """A pass that could not run at all (store/state unreachable, a bug): a critical
    ``monitoring_failure`` alert (same fingerprint as run_pass's, so the next pass that
    runs resolves it), best effort."""
    import logging

    from bqx.state import open_state

    try:
        open_state(settings).raise_alert(
            "monitoring_failure",
            f"monitoring pass failed: {type(e).__name__}: {e}",
            severity="critical",
            fingerprint="monitoring_failure:*",
        )
    except Exception as e2:
        logging.getLogger(__name__).error("monitoring failure not recorded as an alert: %s", e2)


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
    "run_once",
]
