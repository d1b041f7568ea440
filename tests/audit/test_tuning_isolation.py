"""Issue 18 items 2 and 3: Optuna studies are keyed by (pair, model, data window, feature-set
key), and the conformal interval is calibrated on rows the tuner never scored."""

from __future__ import annotations

from datetime import timedelta

import optuna
import pandas as pd
import pytest

from bqx.config import load_settings
from bqx.data.simulator import generate
from bqx.data.store import open_store
from bqx.features.store import FeatureStore
from bqx.training.train import train_pair
from bqx.training.tune import best_params, tune


@pytest.fixture
def five_minute_home(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BQX_BAR_INTERVAL", "5min")
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "1500")
    s = load_settings()
    bars = generate(days=40, pairs="EURUSD", seed=8, interval=timedelta(minutes=5)).bars
    st = open_store(settings=s)
    try:
        st.upsert(bars)
        FeatureStore(s.features_dir, horizon=s.horizon, target=s.target).build(st, ["EURUSD"])
    finally:
        st.close()
    return s


def test_studies_do_not_mix_windows_and_calibration_is_unseen(five_minute_home) -> None:
    s = five_minute_home
    a = tune("EURUSD", s, model="ridge", trials=3, end="2024-01-31", log_to_mlflow=False)
    b = tune("EURUSD", s, model="ridge", trials=2, log_to_mlflow=False)
    # two data windows, two studies: the later window's trials do not join the earlier study
    assert a.study != b.study and a.trials == 3 and b.trials == 2
    assert "EURUSD-ridge" in a.study
    again = tune("EURUSD", s, model="ridge", trials=1, end="2024-01-31", log_to_mlflow=False)
    assert again.study == a.study and again.trials == 4  # same window: accumulates
    # --params best looks up the study of the window training will use
    pa = best_params("EURUSD", "ridge", s, end="2024-01-31")
    pb = best_params("EURUSD", "ridge", s)
    assert pa is not None and pb is not None
    assert pa == optuna.load_study(study_name=a.study, storage=s.resolved_optuna_url).best_params
    assert pb == b.best_params
    assert best_params("EURUSD", "ridge", s, end="2024-01-20") is None  # never tuned
    assert best_params("EURUSD", "lightgbm", s) is None
    # item 3: the rows the tuner scored end (a purge gap) before the calibration rows begin
    scored = optuna.load_study(study_name=b.study, storage=s.resolved_optuna_url).user_attrs[
        "scored"
    ]
    res = train_pair("EURUSD", s, model="ridge", params=pb, n_jobs=1)
    cal = res.artifact.data_window["calibration"]
    gap = pd.Timedelta(s.interval) * (s.horizon + 1)
    assert pd.Timestamp(cal[0]) > pd.Timestamp(scored[1]) + gap
    assert pd.Timestamp(scored[0]) >= pd.Timestamp(res.artifact.data_window["val"][0])
    assert res.artifact.conformal.n_calibration < res.rows["val"]
