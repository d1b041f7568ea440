"""Prometheus metrics: dedicated registries, helpers, exposition, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from bqx.serving.metrics import (
    LATENCY_BUCKETS,
    create_metrics,
    multiprocess_enabled,
    prepare_multiprocess_dir,
    render_latest,
)


def test_instances_do_not_collide() -> None:
    a, b = create_metrics(), create_metrics()
    assert a.registry is not b.registry
    a.model_cache_hits.inc()
    assert a.registry.get_sample_value("bqx_model_cache_hits_total") == 1.0
    assert b.registry.get_sample_value("bqx_model_cache_hits_total") == 0.0
    reg = CollectorRegistry()
    assert create_metrics(reg).registry is reg


def test_request_metrics() -> None:
    m = create_metrics()
    m.observe_request("/v1/predict", "POST", 200, 0.004)
    m.observe_request("/v1/predict", "POST", 200, 0.012)
    m.observe_request("/v1/predict", "POST", 429, 0.0005)
    r = m.registry
    assert (
        r.get_sample_value(
            "bqx_http_requests_total", {"route": "/v1/predict", "method": "POST", "status": "200"}
        )
        == 2.0
    )
    lbl = {"route": "/v1/predict", "method": "POST"}
    assert r.get_sample_value("bqx_http_request_duration_seconds_count", lbl) == 3.0
    assert (
        r.get_sample_value("bqx_http_request_duration_seconds_bucket", {**lbl, "le": "0.005"})
        == 2.0
    )
    assert (
        r.get_sample_value("bqx_http_request_duration_seconds_bucket", {**lbl, "le": "0.001"})
        == 1.0
    )
    assert LATENCY_BUCKETS[0] == 0.001 and 0.02 in LATENCY_BUCKETS and LATENCY_BUCKETS[-1] >= 0.5
    with m.track_in_flight():
        assert r.get_sample_value("bqx_http_requests_in_flight") == 1.0
    assert r.get_sample_value("bqx_http_requests_in_flight") == 0.0


def test_model_and_prediction_metrics() -> None:
    m = create_metrics()
    m.model_cache_misses.inc()
    m.model_cache_evictions.inc(2)
    m.model_load_seconds.observe(0.13)
    m.observe_prediction("EURUSD", "BUY")
    m.observe_prediction("EURUSD", "BUY")
    with m.time_features():
        pass
    m.auth_failures.labels("invalid").inc()
    m.rate_limited.inc()
    m.decision_log_errors.inc()
    r = m.registry
    assert r.get_sample_value("bqx_predictions_total", {"pair": "EURUSD", "signal": "BUY"}) == 2.0
    assert r.get_sample_value("bqx_model_cache_evictions_total") == 2.0
    assert r.get_sample_value("bqx_model_load_seconds_sum") == 0.13
    assert r.get_sample_value("bqx_feature_seconds_count") == 1.0
    assert r.get_sample_value("bqx_auth_failures_total", {"reason": "invalid"}) == 1.0


def test_render_latest() -> None:
    m = create_metrics()
    m.observe_prediction("GBPUSD", "SELL")
    body, ctype = render_latest(m.registry)
    assert ctype == CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'bqx_predictions_total{pair="GBPUSD",signal="SELL"} 1.0' in text
    assert "bqx_http_request_duration_seconds" in text
    assert m.render() == render_latest(m)
    assert not multiprocess_enabled()


_WORKER = textwrap.dedent(
    """
    from bqx.serving.metrics import create_metrics, multiprocess_enabled
    assert multiprocess_enabled()
    m = create_metrics()
    assert create_metrics() is m  # one instance per process in multiprocess mode
    m.observe_prediction("EURUSD", "BUY")
    m.observe_request("/v1/predict", "POST", 200, 0.003)
    """
)
_RENDER = textwrap.dedent(
    """
    import sys
    from bqx.serving.metrics import create_metrics, render_latest
    body, _ = render_latest(create_metrics())
    sys.stdout.write(body.decode())
    """
)


def test_multiprocess_mode_aggregates_workers(tmp_path: Path) -> None:
    """Two 'workers' count into a shared directory; a scrape of either sees the sum."""
    d = prepare_multiprocess_dir(tmp_path / "prom")
    (d / "stale.db").write_bytes(b"")
    d = prepare_multiprocess_dir(d)  # stale files from an earlier run are removed
    assert list(d.iterdir()) == []
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(d)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _WORKER], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", _RENDER],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'bqx_predictions_total{pair="EURUSD",signal="BUY"} 2.0' in out
    assert (
        'bqx_http_requests_total{method="POST",route="/v1/predict",status="200"} 2.0' in out
        or 'bqx_http_requests_total{route="/v1/predict",method="POST",status="200"} 2.0' in out
    )
