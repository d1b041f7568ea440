"""bqx train / models end to end: two pairs in parallel (process pool and Ray), registry CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bqx.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout


@pytest.fixture
def home_with_data(monkeypatch):
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "3000")
    code, out = run("data", "generate", "--days", "16", "--pairs", "EURUSD,USDJPY", "--seed", "3",
                    "--signal-strength", "0.2", "--json")  # fmt: skip
    assert code == 0, out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.integration)])
def test_train_two_pairs_in_parallel_and_manage_versions(home_with_data, backend):
    code, out = run("train", "--pairs", "EURUSD,USDJPY", "--model", "ridge", "--jobs", "2",
                    "--backend", backend, "--promote", "--json")  # fmt: skip
    assert code == 0, out
    d = json.loads(out)
    assert [p["pair"] for p in d["pairs"]] == ["EURUSD", "USDJPY"]
    assert all(p["ok"] and p["version"] == "1" for p in d["pairs"])
    code, out = run("models", "list", "--json")
    rows = json.loads(out)
    assert {r["pair"] for r in rows} == {"EURUSD", "USDJPY"}
    promoted = {r["pair"] for r in rows if "production" in r["aliases"]}
    assert promoted == {p["pair"] for p in d["pairs"] if p["approved"]}
    code, out = run("models", "show", "EURUSD", "--version", "1", "--json")
    assert code == 0 and json.loads(out)["meta"]["pair"] == "EURUSD"


@pytest.mark.slow
def test_failing_pair_does_not_stop_the_others(home_with_data):
    # GBPUSD has no data: reported as failed, EURUSD still trains; exit code 1
    code, out = run(
        "train", "--pairs", "EURUSD,GBPUSD", "--model", "ridge", "--jobs", "2", "--json"
    )
    assert code == 1
    d = json.loads(out)
    status = {p["pair"]: p["ok"] for p in d["pairs"]}
    assert status == {"EURUSD": True, "GBPUSD": False}
    assert d["failed"] == ["GBPUSD"]
    err = next(p["error"] for p in d["pairs"] if p["pair"] == "GBPUSD")
    assert "GBPUSD" in err


def test_models_errors_are_clear(home_with_data):
    res = runner.invoke(app, ["models", "promote", "EURUSD", "7"])
    assert res.exit_code == 2
    assert "no version 7" in res.stderr
