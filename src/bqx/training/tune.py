"""Hyperparameter search with Optuna (TPE sampler, median pruning), objective on validation.

The study lives in Optuna's own storage: SQLite under the project home by default
(``optuna.db``), any RDB URL in production (``BQX_OPTUNA_URL=postgresql://...``) so workers on
several machines can share one study. Feature selection runs once, on the training segment,
before the trials; every trial fits on train and is scored by R² on the first half of
validation (the second half calibrates the conformal interval, unseen by the search). Studies
are keyed by pair, model, data window and feature-set/target key (:func:`study_name`). Only the best
trial is logged to MLflow (one run, not one per trial); ``bqx train --params best`` uses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bqx.config import Settings, load_settings
from bqx.errors import BqxError
from bqx.training.metrics import regression_metrics
from bqx.training.models import default_params, fit_pipeline, make_estimator, make_pipeline
from bqx.training.selection import select_features
from bqx.training.splits import chrono_split, tuning_calibration_split
from bqx.training.train import load_training_frame, prepare
from bqx.universe import normalize_pair


def data_key(settings: Settings) -> str:
    """8 hex digits naming what a row *means*: feature-set version, horizon, target, bar
    interval. Trials scored on another definition of the features or target must not mix."""
    from bqx.features import feature_set_version

    payload = json.dumps(
        [feature_set_version(), settings.horizon, settings.target, settings.bar_interval]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def data_window(index: pd.DatetimeIndex) -> str:
    """The first and last bar (UTC, minutes) of the rows a study is fitted and scored on."""
    if not len(index):
        return "empty"
    return f"{index[0]:%Y%m%dT%H%M}-{index[-1]:%Y%m%dT%H%M}"


def study_name(pair: str, model: str, window: str, key: str) -> str:
    """One study per (pair, model, data window, feature-set/target key).

    Keyed by the data window so that ``load_if_exists`` never mixes trials scored on other
    months: a study over data that reaches later months could have seen a later model's test
    months, and ``--params best`` would carry that selection into it."""
    return f"bqx-{normalize_pair(pair)}-{model}-{window}-{key}"


def _tuning_frame(pair: str, s: Settings, start: Any, end: Any) -> pd.DataFrame:
    return prepare(load_training_frame(pair, s, start, end))


@dataclass
class TuneResult:
    pair: str
    model: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    complete: int
    seconds: float
    study: str
    storage: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _suggest(model: str, trial: Any) -> dict[str, Any]:
    if model == "lightgbm":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
            "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 2000, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
        }
    if model == "xgboost":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
            "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 500.0, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
        }
    if model == "lgbm_rf":
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 16),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 2000, log=True),
            "feature_fraction_bynode": trial.suggest_float("feature_fraction_bynode", 0.05, 0.6),
            "subsample": trial.suggest_float("subsample", 0.1, 0.9),
        }
    if model == "rf":
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 16),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 2000, log=True),
            "max_features": trial.suggest_float("max_features", 0.05, 0.6),
            "max_samples": trial.suggest_float("max_samples", 0.1, 1.0),
        }
    return {"alpha": trial.suggest_float("alpha", 1e-2, 1e6, log=True)}


def tune(
    pair: str,
    settings: Settings | None = None,
    *,
    model: str = "lightgbm",
    trials: int = 50,
    timeout: float | None = None,
    start: Any = None,
    end: Any = None,
    n_jobs: int | None = None,
    seed: int = 42,
    log_to_mlflow: bool = True,
    progress: Any = None,
) -> TuneResult:
    import optuna

    s = settings or load_settings()
    pair = normalize_pair(pair)
    t0 = time.perf_counter()
    df = _tuning_frame(pair, s, start, end)
    name = study_name(pair, model, data_window(pd.DatetimeIndex(df.index)), data_key(s))
    sp = chrono_split(len(df), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    X = df.drop(columns=["target"])
    y = df["target"].to_numpy(np.float64)
    jobs = n_jobs or s.train.jobs
    sel = select_features(
        X.iloc[sp.train], y[sp.train], threshold=s.train.selection_threshold,
        max_features=s.train.max_features, rows=s.train.selection_rows, seed=s.train.seed, n_jobs=jobs,
        params=s.train.selection_params or None, engine=s.train.selection_engine,
    )  # fmt: skip
    # trials are scored on the first half of validation only: the second half calibrates the
    # conformal interval and must stay unseen by the search (tuning_calibration_split)
    scored, _ = tuning_calibration_split(sp.val, s.horizon + 1)
    Xtr, Xva = X.iloc[sp.train][sel.features], X.iloc[scored][sel.features]
    ytr, yva = y[sp.train], y[scored]

    def objective(trial: Any) -> float:
        p = default_params(model)
        p.update(_suggest(model, trial))
        if model == "rf":
            # grow the forest in stages so unpromising trials are pruned early
            p["warm_start"] = True
            total = int(p.get("n_estimators", 100))
            pipe = make_pipeline(
                sel.features, make_estimator(model, p, n_jobs=jobs, n_features=len(sel.features))
            )
            score = float("nan")
            for step, k in enumerate(range(total // 4, total + 1, total // 4), start=1):
                pipe.set_params(model__n_estimators=k)
                pipe.fit(Xtr, ytr)
                score = regression_metrics(yva, pipe.predict(Xva))["r2"]
                trial.report(score, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return score
        pipe = make_pipeline(
            sel.features, make_estimator(model, p, n_jobs=jobs, n_features=len(sel.features))
        )
        fit_pipeline(pipe, Xtr, ytr, p)
        if model in ("lightgbm", "xgboost"):
            # intermediate values: validation R² of the first k trees
            est = pipe.named_steps["model"]
            Xs = pipe[:-1].transform(Xva)
            n = int(p["n_estimators"])
            score = float("nan")
            for step, k in enumerate(sorted({max(1, n // 4), n // 2, 3 * n // 4, n}), start=1):
                if model == "lightgbm":
                    pred = est.predict(Xs, num_iteration=k)
                else:
                    pred = est.predict(Xs, iteration_range=(0, k))
                score = regression_metrics(yva, pred)["r2"]
                trial.report(score, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return score
        return regression_metrics(yva, pipe.predict(Xva))["r2"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = s.resolved_optuna_url
    s.ensure_home()
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)  # fmt: skip
    except Exception:
        # workers of a distributed tuning run (bqx.cluster.tune) create the study at once:
        # the loser of that race loads the winner's study
        study = _load_after_race(name, storage, sampler, pruner)
    study.set_user_attr(
        "scored", [df.index[scored[0]].isoformat(), df.index[scored[-1]].isoformat()]
    )
    callbacks = [lambda st, tr: progress(len(st.trials), trials)] if progress else None
    study.optimize(
        objective, n_trials=trials, timeout=timeout, callbacks=callbacks, catch=(ValueError,)
    )
    states = [t.state for t in study.trials]
    if not any(st == optuna.trial.TrialState.COMPLETE for st in states):
        failed = sum(st == optuna.trial.TrialState.FAIL for st in states)
        raise BqxError(
            f"study {study.study_name}: no trial completed ({len(states)} trials, {failed} failed)",
            hint="run more trials (--trials), or check the failed trials' errors in the log",
        )
    best = study.best_trial
    res = TuneResult(
        pair=pair,
        model=model,
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else float("nan")),
        trials=len(study.trials),
        pruned=sum(st == optuna.trial.TrialState.PRUNED for st in states),
        complete=sum(st == optuna.trial.TrialState.COMPLETE for st in states),
        seconds=time.perf_counter() - t0,
        study=study.study_name,
        storage=storage,
    )
    if log_to_mlflow:
        _log_best(s, res, sel.features)
    return res


def _load_after_race(name: str, storage: str, sampler: Any, pruner: Any) -> Any:
    """Load a study another worker is creating at this moment: its row may not be committed
    yet when our ``create_study`` failed on the unique name, so retry briefly."""
    import optuna

    for attempt in range(20):
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                     pruner=pruner)  # fmt: skip
        except KeyError:
            if attempt == 19:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _log_best(s: Settings, res: TuneResult, features: list[str]) -> None:
    import mlflow

    from bqx.registry import Registry

    reg = Registry(s)
    exp = reg.experiment_id()
    with mlflow.start_run(experiment_id=exp, run_name=f"tune-{res.pair}-{res.model}"):
        mlflow.set_tags({"kind": "tuning", "pair": res.pair, "study": res.study})
        mlflow.log_params({f"best.{k}": v for k, v in res.best_params.items()})
        mlflow.log_params({"model": res.model, "n_features": len(features)})
        mlflow.log_metrics(
            {
                "best_val_r2": res.best_value,
                "trials": res.trials,
                "pruned": res.pruned,
                "seconds": res.seconds,
            }
        )


def best_params(
    pair: str,
    model: str,
    settings: Settings | None = None,
    *,
    start: Any = None,
    end: Any = None,
) -> dict[str, Any] | None:
    """Best parameters of the study tuned on the same data window (``start``/``end`` resolved
    to the rows training will use) and feature set; None when there is no such study."""
    import optuna

    s = settings or load_settings()
    try:
        df = _tuning_frame(normalize_pair(pair), s, start, end)
    except BqxError:
        return None
    name = study_name(pair, model, data_window(pd.DatetimeIndex(df.index)), data_key(s))
    try:
        study = optuna.load_study(study_name=name, storage=s.resolved_optuna_url)
        return dict(study.best_trial.params)
    except (KeyError, ValueError):
        return None
