"""Batch prediction (batch feature path) agrees with the API and writes parquet/csv."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bqx.cli import app as cli
from bqx.errors import BqxError, NoDataError
from bqx.serving.app import create_app
from bqx.serving.batch import BATCH_COLUMNS, predict_batch, write_output

from .conftest import hdr

runner = CliRunner()


def test_batch_equals_api_for_the_same_bars(settings, keys):
    with TestClient(create_app(settings)) as c:
        last = c.app.state.ctx.service.bars.snapshot.last_ts
        start, end = last - pd.Timedelta(hours=3), last
        res = predict_batch("EURUSD,GBPUSD,AUDNZD", start, end, settings)
        f = res.frame
        assert list(f.columns) == list(BATCH_COLUMNS)
        assert res.skipped == {"AUDNZD": "no production model"}
        assert set(f["pair"]) == {"EURUSD", "GBPUSD"}
        assert f["ts"].min() >= start and f["ts"].max() == end
        assert f["observed"].all()
        for _, row in f.groupby("pair").nth([0, 57, -1]).iterrows():
            d = c.post(
                "/v1/predict",
                json={"pair": row["pair"], "timestamp": row["available_at"].isoformat()},
                headers=hdr(keys["reader"]),
            ).json()
            assert pd.Timestamp(d["timestamp"]) == row["ts"]
            assert d["prediction"] == pytest.approx(row["prediction"], rel=1e-9, abs=1e-15)
            assert d["confidence_interval"][0] == pytest.approx(row["lo"], rel=1e-9, abs=1e-15)
            assert d["signal"] == row["signal"] and d["signal_reason"] == row["reason"]
            assert d["signal_strength"] == pytest.approx(row["strength"], rel=1e-9, abs=1e-12)
            assert d["model_version"] == row["model_version"]


def test_batch_errors(settings):
    with pytest.raises(NoDataError, match="production model"):
        predict_batch("AUDNZD", "2024-01-03", "2024-01-04", settings)
    with pytest.raises(BqxError, match="before"):
        predict_batch("EURUSD", "2024-01-04", "2024-01-03", settings)
    with pytest.raises(NoDataError):
        predict_batch("EURUSD", "2023-01-03", "2023-01-04", settings)
    with pytest.raises(BqxError, match=r"\.parquet or \.csv"):
        write_output(pd.DataFrame(), "out.xlsx")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_predict_batch_cli(home, monkeypatch, tmp_path, suffix):
    monkeypatch.setenv("BQX_HOME", str(home))
    out = tmp_path / f"pred{suffix}"
    res = runner.invoke(
        cli,
        [
            "predict-batch",
            "--pairs",
            "EURUSD,USDJPY",
            "--start",
            "2024-01-04T10:00",
            "--end",
            "2024-01-04T11:59",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["rows"] == 240 and d["pairs"] == ["EURUSD", "USDJPY"]
    df = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(df) == 240 and list(df.columns) == list(BATCH_COLUMNS)
