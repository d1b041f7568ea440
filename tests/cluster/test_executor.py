"""The cluster executor and start-up checks without a cluster (fast)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bqx.cluster.checks import check_tracking, local_state_warnings, state_report
from bqx.cluster.executor import Call, ClusterError, Executor, ray_address, worker_home
from bqx.config import load_settings
from bqx.errors import ConfigError
from tests.conftest import PG_URL, _pg_reachable, require_server


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return int(port)


def _square(x: int, settings: dict[str, object]) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


def test_local_executor_reports_failures_without_stopping_the_others() -> None:
    s = load_settings()
    data = s.model_dump(mode="json")
    calls = [Call(_square, (x, data), "EURUSD", settings_at=1) for x in (2, -1, 3)]
    with Executor(s, "local", jobs=1) as ex:
        done = sorted(ex.map(calls), key=lambda d: d.index)
    assert [d.value for d in done] == [4, None, 9]
    assert done[1].error is not None and "negative" in done[1].error
    assert all(d.node.startswith("local:") for d in done)


def test_ray_address_setting_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(load_settings()) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_address(load_settings()) == "10.0.0.5:6379"
    monkeypatch.setenv("BQX_TRAIN__RAY_ADDRESS", "head:6380")
    assert ray_address(load_settings()) == "head:6380"
    assert Executor(load_settings(), "ray").remote
    assert not Executor(load_settings(), "local").remote


def test_remote_tasks_refuse_a_store_on_the_drivers_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BQX_TRAIN__RAY_ADDRESS", "127.0.0.1:6380")
    with pytest.raises(ConfigError) as e:
        Executor(load_settings(), "ray").__enter__()
    assert "store_url" in str(e.value) and "duckdb" in str(e.value)


@pytest.mark.integration
def test_unreachable_ray_address_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    require_server("PostgreSQL", _pg_reachable())
    port = _closed_port()
    monkeypatch.setenv("BQX_STORE_URL", PG_URL)
    monkeypatch.setenv("BQX_TRAIN__RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ClusterError) as e:
        Executor(load_settings(), "ray").__enter__()
    msg = str(e.value)
    assert "train.ray_address" in msg and f"127.0.0.1:{port}" in msg


def test_unreachable_mlflow_server_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("BQX_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(ClusterError) as e:
        check_tracking(load_settings())
    assert "tracking_uri" in str(e.value) and f"127.0.0.1:{port}" in str(e.value)


def test_state_check_warns_only_in_cluster_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_state_warnings(load_settings()) == []  # embedded: all local on purpose
    monkeypatch.setenv("BQX_STORE_URL", PG_URL)
    monkeypatch.setenv("BQX_TRACKING_URI", "http://mlflow:5000")
    warnings = "\n".join(local_state_warnings(load_settings()))
    assert "state_url" in warnings and "optuna_url" in warnings
    assert "rate_limit_url" in warnings
    assert "store_url" not in warnings and "tracking_uri" not in warnings
    monkeypatch.setenv("BQX_STATE_URL", PG_URL)
    monkeypatch.setenv("BQX_OPTUNA_URL", PG_URL)
    monkeypatch.setenv("BQX_SERVE__RATE_LIMIT_URL", "redis://r:6379/0")
    s = load_settings()
    assert local_state_warnings(s) == []
    assert all(p.shared for p in state_report(s))


def test_worker_home_is_per_store_and_node_local(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BQX_WORKER_HOME", str(tmp_path / "node"))
    a = worker_home({"store_url": "postgresql://a/x", "bar_interval": "1min"})
    b = worker_home({"store_url": "postgresql://b/x", "bar_interval": "1min"})
    assert a != b and a.parent == b.parent == tmp_path / "node"


def _threads(_x: int, settings: dict[str, object]) -> dict[str, str | None]:
    import os

    from threadpoolctl import threadpool_info

    from bqx.cluster.executor import THREAD_VARS

    out: dict[str, str | None] = {v: os.environ.get(v) for v in THREAD_VARS}
    import numpy  # noqa: F401  (its BLAS is loaded now)

    out["blas"] = str(max((p["num_threads"] for p in threadpool_info()), default=1))
    return out


def test_local_pool_workers_get_their_share_of_the_cores(monkeypatch) -> None:
    """2 workers on this machine's cores: each worker's native libraries get cores // 2
    threads (not a thread per core each, whose idle threads spin)."""
    import os

    from bqx.cluster.executor import THREAD_VARS

    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    s = load_settings()
    data = s.model_dump(mode="json")
    want = str(max(1, (os.cpu_count() or 1) // 2))
    with Executor(s, "local", jobs=2) as ex:
        assert ex.threads_per_task(2) == int(want)
        done = list(ex.map([Call(_threads, (i, data), "EURUSD", settings_at=1) for i in (1, 2)]))
    for d in done:
        assert d.error is None, d.error
        assert {v: d.value[v] for v in THREAD_VARS} == dict.fromkeys(THREAD_VARS, want)
        assert d.value["blas"] == want
