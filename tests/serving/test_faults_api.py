"""Infrastructure errors seen through the API (issue 18.10, 18.16): a registry that fails
is 503 (not 404), the model cache keeps serving through a registry outage, and 503 bodies
show no password, host, path or PID."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bqx.infra.pgtemp import free_port
from bqx.serving.app import create_app

from .conftest import create_key, hdr, make_settings


def _dead_mlflow(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_registry_down_is_503_not_404(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bqx.errors import ModelNotFoundError, RegistryUnavailableError
    from bqx.registry import Registry

    s = make_settings(home)
    key = create_key(s, "reader")
    s.tracking_uri = _dead_mlflow(monkeypatch)
    with pytest.raises(RegistryUnavailableError):
        Registry(s).production_version("EURUSD")
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key))
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "registry_unavailable" and r.headers["Retry-After"]
        assert r.json()["component"] == "registry" and "127.0.0.1" not in r.text
        rz = c.get("/readyz")
        assert rz.status_code == 503 and rz.json()["checks"]["registry"] is False
    # a model that does not exist is still a 404
    with pytest.raises(ModelNotFoundError):
        Registry(make_settings(home)).get("EURUSD", "99")


def test_model_cache_keeps_serving_through_registry_outage(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    s = make_settings(home)  # alias_ttl_s = 0.5
    key = create_key(s, "reader")
    with TestClient(create_app(s)) as c:
        assert c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)).status_code == 200
        dead = _dead_mlflow(monkeypatch)
        svc = c.app.state.ctx.service
        svc.registry._client = MlflowClient(tracking_uri=dead, registry_uri=dead)
        time.sleep(1.2)  # alias checks now fail; before 18.10 the model was dropped (404)
        r = c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key))
        assert r.status_code == 200, r.text
        assert svc.models.cached("EURUSD") or "EURUSD" in svc.models.pairs()


def test_503_bodies_leak_no_address_path_or_pid(home: Path, tmp_path: Path) -> None:
    """A DuckDB store locked by another process and a PostgreSQL store with a password:
    the 503 says which component, never the path, the PID or the credentials."""
    from bqx.data.store import DuckDBStore
    from bqx.serving.service import PredictionService

    s = make_settings(home)
    key = create_key(s, "trader")
    path = tmp_path / "locked.duckdb"
    DuckDBStore(path, timedelta(minutes=1))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(path)!r})
            print("locked", flush=True)
            time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = DuckDBStore.__new__(DuckDBStore)  # the file exists: skip the CREATE TABLE
        store.path, store.url, store.interval = path, f"duckdb:///{path}", timedelta(minutes=1)
        store.lock_timeout_s, store._held, store._held_ro = 0.3, None, False
        store.open_stats = {"opens": 0, "lock_retries": 0, "lock_sleep_s": 0.0, "open_s": 0.0}
        svc = PredictionService(s, store=store)
        bar = {
            "pair": "EURUSD",
            "ts": "2024-01-02T10:00:00Z",
            "open": 1.1,
            "high": 1.2,
            "low": 1.0,
            "close": 1.1,
        }
        with TestClient(create_app(s, service=svc)) as c:
            r = c.post("/v1/bars", json={"bars": [bar]}, headers=hdr(key))
        assert r.status_code == 503, r.text
        body = r.text
        assert r.json()["error"] == "store_unavailable" and r.json()["component"] == "store"
        for leak in (str(path), str(tmp_path), str(holder.pid), "PID", sys.executable):
            assert leak not in body, leak
    finally:
        holder.kill()
        holder.wait()

    s2 = make_settings(home)
    s2.store_url = f"postgresql://bqxapp:s3cret-pw@127.0.0.1:{free_port()}/proddb"
    key2 = create_key(s2, "reader")
    with TestClient(create_app(s2)) as c:
        r = c.post(
            "/v1/predict",
            json={"pair": "EURUSD", "timestamp": "2020-01-01T00:00:00Z"},
            headers=hdr(key2),
        )
        assert r.status_code == 503, r.text
        for leak in ("s3cret", "bqxapp", "proddb", "127.0.0.1"):
            assert leak not in r.text, leak
