"""Training: purged splits, feature selection, per-pair models, intervals, tuning.

Public entry points::

    train_pair(pair, settings=None, *, model="rf", params=None, ...) -> TrainResult
    train_many(pairs, settings=None, *, model="rf", jobs=2, backend="local") -> list[TrainOutcome]
    tune(pair, settings=None, *, model="lightgbm", trials=50) -> TuneResult
"""

#: The model zoo's names (:mod:`bqx.training.models`). Here, in the package's light
#: ``__init__``, so the CLI can check ``--model`` without importing scikit-learn.
MODELS = ("rf", "lightgbm", "lgbm_rf", "xgboost", "ridge")
