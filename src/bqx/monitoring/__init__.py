"""Monitoring: realised targets for served decisions, live quality, drift, alerts.

Public API (for the operator / rollout code)::

    mature(state, bars, settings, *, now=None) -> MatureReport   # fill realized_target

Data flows one way: the decision log (state DB) + the bar store -> monitoring.
"""

from __future__ import annotations

from bqx.monitoring.mature import MatureReport, mature

__all__ = ["MatureReport", "mature"]
