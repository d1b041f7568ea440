"""The service as a library, ``bqx predict`` == the API, and one real ``bqx serve`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bqx.cli import app as cli
from bqx.errors import NoDataError, StaleDataError, UnknownPairError
from bqx.serving.app import create_app
from bqx.serving.service import InvalidInputError, NoProductionModelError, PredictionService

from .conftest import bqx_server, clean_env, hdr, make_settings, run_bqx

runner = CliRunner()


def test_library_predict_and_errors(settings):
    svc = PredictionService(settings, live=False)
    p = svc.predict("EURUSD", log=False)
    assert p.pair == "EURUSD" and p.model_version == "1"
    with pytest.raises(UnknownPairError):
        svc.predict("EURXXX")
    with pytest.raises(InvalidInputError):
        svc.predict("EURUSD", "not a time")
    with pytest.raises(NoProductionModelError):
        svc.predict("AUDNZD")
    with pytest.raises(NoDataError):
        svc.predict("EURUSD", "2019-01-01")
    with pytest.raises(StaleDataError):
        svc.predict("EURUSD", "2031-01-01")
    svc.close()


@pytest.mark.parametrize("offset_min", [None, 45, 3000])
def test_api_prediction_equals_bqx_predict(home, settings, keys, monkeypatch, offset_min):
    """Same bar -> same numbers, whether the API answers from its in-memory window, or from
    the store for a time older than the window (offset 3000 min), or the CLI reads the store."""
    monkeypatch.setenv("BQX_HOME", str(home))
    with TestClient(create_app(settings)) as c:
        snap = c.app.state.ctx.service.bars.snapshot
        body: dict[str, str] = {"pair": "USDJPY"}
        if offset_min is not None:
            t = snap.last_ts - pd.Timedelta(minutes=offset_min)
            # land on a bar that exists (the week may have a closed stretch)
            body["timestamp"] = t.isoformat()
        api = c.post("/v1/predict", json=body, headers=hdr(keys["reader"])).json()
    args = ["predict", "USDJPY", "--json"]
    if "timestamp" in body:
        args += ["--timestamp", body["timestamp"]]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    cli_out = json.loads(res.stdout)
    for k in (
        "timestamp",
        "prediction",
        "confidence_interval",
        "signal",
        "signal_strength",
        "signal_reason",
        "model_version",
        "feature_hash",
        "features_used",
    ):
        assert cli_out[k] == api[k], k


def test_bqx_predict_cli_errors(home, monkeypatch):
    monkeypatch.setenv("BQX_HOME", str(home))
    res = runner.invoke(cli, ["predict", "AUDNZD"])
    assert res.exit_code == 2 and "no production model for AUDNZD" in res.stderr
    res = runner.invoke(cli, ["predict", "EURUSD", "--timestamp", "2031-01-01"])
    assert res.exit_code == 2 and "stale" in res.stderr
    res = runner.invoke(cli, ["predict", "EURUSD"])
    assert res.exit_code == 0 and "EURUSD" in res.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_end_to_end_ingest_train_serve_predict(tmp_path):
    """Fresh home: simulate bars, train + promote with the CLI, start a real `bqx serve`
    on 127.0.0.1, predict over HTTP, and check it equals `bqx predict`."""
    env = clean_env(
        BQX_HOME=str(tmp_path / "e2e"),
        BQX_TRAIN__APPROVAL_RULE="always",
        BQX_TRAIN__SELECTION_ROWS="3000",
    )
    run_bqx(
        env,
        "data",
        "generate",
        "--days",
        "6",
        "--pairs",
        "all",
        "--seed",
        "9",
        "--signal-strength",
        "0.2",
        "--json",
    )
    run_bqx(
        env, "train", "--pairs", "EURUSD", "--model", "ridge", "--jobs", "1", "--promote", "--json"
    )
    key = json.loads(run_bqx(env, "keys", "create", "--role", "reader", "--json"))["key"]
    with bqx_server(env) as base:
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        with httpx.Client(base_url=base, headers=hdr(key)) as c:
            r = c.post("/v1/predict", json={"pair": "EURUSD"})
            assert r.status_code == 200, r.text
            api = r.json()
            assert c.post("/v1/predict", json={"pair": "GBPUSD"}).json()["error"] == (
                "no_production_model"
            )
            assert httpx.post(f"{base}/v1/predict", json={"pair": "EURUSD"}).status_code == 401
            assert "bqx_predictions_total" in c.get("/metrics").text
    out = json.loads(run_bqx(env, "predict", "EURUSD", "--json"))
    for k in ("timestamp", "prediction", "confidence_interval", "signal", "model_version"):
        assert out[k] == api[k], k
    # the server flushed its decision log on shutdown
    from bqx.state import open_state

    s = make_settings(Path(env["BQX_HOME"]))
    ids = set(open_state(s).read_decisions()["decision_id"])
    assert api["decision_id"] in ids and out["decision_id"] in ids
