"""Optuna tuning with trials on several workers (a process pool or Ray nodes).

Optuna distributes trials over every process that optimises the same study in the same RDB
storage; here each task runs a share of the trials on the shared study (``optuna_url``:
PostgreSQL on a cluster) with its own sampler seed, so parallel workers do not propose the
same parameters. The workers create the study (named by the data window they resolve: see
:func:`bqx.training.tune.study_name`); the driver alone logs the best trial to MLflow.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bqx.cluster.executor import RAY_SETTING, Call, Executor
from bqx.config import Settings
from bqx.errors import BqxError, ConfigError
from bqx.training.tune import TuneResult
from bqx.universe import normalize_pair


def _tune_part(pair: str, data: dict[str, Any], model: str, trials: int, timeout: float | None,
               start: Any, end: Any, seed: int) -> str:  # fmt: skip
    """Runs in a worker: ``trials`` trials on the shared study; returns the study's name
    (keyed by the data window the worker resolved, see :func:`study_name`)."""
    from bqx.training.tune import tune

    s = Settings.model_validate(data)
    res = tune(pair, s, model=model, trials=trials, timeout=timeout, start=start, end=end,
               n_jobs=1, seed=seed, log_to_mlflow=False)  # fmt: skip
    return res.study


def tune_distributed(
    pair: str,
    settings: Settings,
    *,
    model: str = "lightgbm",
    trials: int = 50,
    workers: int = 2,
    backend: str = "local",
    timeout: float | None = None,
    start: Any = None,
    end: Any = None,
    seed: int = 42,
    log_to_mlflow: bool = True,
) -> TuneResult:
    """``trials`` trials of one study split over ``workers`` tasks; returns the study's result."""
    import optuna

    s = settings
    pair = normalize_pair(pair)
    storage = s.resolved_optuna_url
    t0 = time.perf_counter()
    ex = Executor(s, backend, workers)
    if ex.remote and storage.startswith("sqlite"):
        raise ConfigError(
            f"optuna_url = {storage}: a SQLite file on the driver's disk; trials on other Ray "
            f"nodes ({RAY_SETTING} = {ex.address}) cannot share it",
            hint="set BQX_OPTUNA_URL=postgresql://... (the shared Optuna DB)",
        )
    s.ensure_home()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not storage.startswith("sqlite"):
        # create Optuna's schema once, here: workers that each create it on a fresh database
        # race on CREATE TABLE and one of them fails
        optuna.storages.RDBStorage(storage)
    n = max(1, min(workers, trials))
    per = [trials // n + (1 if i < trials % n else 0) for i in range(n)]
    data = s.model_dump(mode="json")
    data["home"] = str(s.home.resolve())
    errors = []
    names: set[str] = set()
    with ex:
        calls = [
            Call(_tune_part, (pair, data, model, k, timeout, start, end, seed + i), pair)
            for i, k in enumerate(per)
        ]
        failed = []
        for d in ex.map(calls):  # completion order: Done.index says which call
            if d.error:
                failed.append(calls[d.index])
            elif d.value:
                names.add(str(d.value))
        if failed:  # one retry: a worker lost to a transient error (a node, the DB) runs again
            for d in ex.map(failed):
                if d.error:
                    errors.append(d.error)
                elif d.value:
                    names.add(str(d.value))
    if errors:  # a lost worker means fewer trials than asked: say so instead of a short study
        raise BqxError(
            f"tuning {pair}: {len(errors)} of {n} workers failed: "
            + "; ".join(e.strip().splitlines()[-1] for e in errors[:3]),
            hint="the trials that completed stay in the study; rerun to add the missing ones",
        )
    if len(names) > 1:  # the workers resolved different data windows (bars arrived meanwhile)
        raise BqxError(
            f"tuning {pair}: workers tuned different data windows ({', '.join(sorted(names))})",
            hint="pass --start/--end so every worker scores the same rows",
        )
    if not names:
        raise BqxError(
            f"tuning {pair}: no worker completed"
            + (
                f"; worker errors: {'; '.join(e.splitlines()[0] for e in errors[:3])}"
                if errors
                else ""
            )
        )
    name = names.pop()
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state for t in study.trials]
    if not any(st == optuna.trial.TrialState.COMPLETE for st in states):
        raise BqxError(
            f"study {name}: no trial completed"
            + (
                f"; worker errors: {'; '.join(e.splitlines()[0] for e in errors[:3])}"
                if errors
                else ""
            ),
        )
    best = study.best_trial
    res = TuneResult(
        pair=pair,
        model=model,
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else math.nan),
        trials=len(study.trials),
        pruned=sum(st == optuna.trial.TrialState.PRUNED for st in states),
        complete=sum(st == optuna.trial.TrialState.COMPLETE for st in states),
        seconds=time.perf_counter() - t0,
        study=name,
        storage=storage,
    )
    if log_to_mlflow:
        _log(s, res, n)
    return res


def _log(s: Settings, res: TuneResult, workers: int) -> None:
    import mlflow

    from bqx.registry import Registry

    reg = Registry(s)
    with mlflow.start_run(
        experiment_id=reg.experiment_id(), run_name=f"tune-{res.pair}-{res.model}"
    ):
        mlflow.set_tags({"kind": "tuning", "pair": res.pair, "study": res.study})
        mlflow.log_params({f"best.{k}": v for k, v in res.best_params.items()})
        mlflow.log_params({"model": res.model, "workers": workers})
        mlflow.log_metrics({"best_val_r2": res.best_value, "trials": res.trials,
                            "pruned": res.pruned, "seconds": res.seconds})  # fmt: skip
