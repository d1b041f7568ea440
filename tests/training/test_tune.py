"""Optuna tuning: study persisted in its own storage, pruning, only the best trial in MLflow,
and `bqx train --params best` uses the best parameters."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bqx.cli import app
from bqx.config import Settings


@pytest.mark.slow
def test_tune_persists_and_train_uses_best(monkeypatch):
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "3000")
    r = CliRunner()
    assert r.invoke(app, ["data", "generate", "--days", "12", "--pairs", "EURUSD", "--seed", "2",
                          "--signal-strength", "0.2", "--json"]).exit_code == 0  # fmt: skip
    assert r.invoke(app, ["features", "build", "--pairs", "EURUSD", "--json"]).exit_code == 0
    res = r.invoke(
        app, ["tune", "--pair", "EURUSD", "--trials", "8", "--model", "lightgbm", "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["trials"] == 8 and d["complete"] + d["pruned"] == 8
    s = Settings()
    assert d["storage"] == s.resolved_optuna_url and (s.home / "optuna.db").exists()
    # the study accumulates across runs (shared storage)
    res = r.invoke(
        app, ["tune", "--pair", "EURUSD", "--trials", "2", "--model", "lightgbm", "--json"]
    )
    assert json.loads(res.stdout)["trials"] == 10
    res = r.invoke(app, ["tune", "--pair", "EURUSD", "--trials", "0"])  # was a traceback
    assert res.exit_code == 2 and "--trials" in " ".join(res.output.split())

    import mlflow

    mlflow.set_tracking_uri(s.resolved_tracking_uri)
    runs = mlflow.search_runs(
        experiment_names=["bqx-training"], filter_string="tags.kind = 'tuning'"
    )
    assert len(runs) == 2  # one per tuning session: the best trial only, not every trial
    from bqx.training.tune import best_params

    best = best_params("EURUSD", "lightgbm", s)
    assert best and set(best) >= {"num_leaves", "learning_rate"}
    res = r.invoke(
        app,
        [
            "train",
            "--pairs",
            "EURUSD",
            "--model",
            "lightgbm",
            "--params",
            "best",
            "--jobs",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    from bqx.registry import Registry

    art = Registry(s).load("EURUSD", version="1")
    assert all(art.params[k] == v for k, v in best.items())
