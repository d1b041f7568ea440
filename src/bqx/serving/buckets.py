"""Latency histogram buckets, shared by the service's metrics and the monitoring pass's
operational rules (kept apart from :mod:`bqx.serving.metrics` so that a monitoring pass
does not import prometheus_client for a tuple)."""

from __future__ import annotations

#: Request latency: dense where the p99 target (20 ms) lives, up to 1 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.2,
    0.5,
    1.0,
)
