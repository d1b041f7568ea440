"""The model artifact: everything serving needs to turn a candidate vector into a forecast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from bqx.training.intervals import _FLOOR, Conformal
from bqx.training.shrinkage import IDENTITY, Shrinkage

ARTIFACT_FILE = "artifact.joblib"
META_FILE = "meta.json"


@dataclass
class ModelArtifact:
    """A fitted per-pair model with its selection, interval calibration and provenance."""

    pair: str
    model: str  # rf | lightgbm | lgbm_rf | xgboost | ridge
    params: dict[str, Any]
    pipeline: Pipeline
    features: list[str]  # selected candidate columns, in pipeline order
    all_columns: list[str]  # the candidate layout the features index into
    feature_set_version: str
    horizon: int
    target: str
    conformal: Conformal
    metrics: dict[str, Any]
    data_window: dict[str, list[str]]
    selection: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())
    version: str | None = None  # registry version, set when loaded from the registry
    #: bqx.decision.regime.RegimeModel fitted on the training segment (None: not fitted)
    regime: Any = None
    _fast: Any = field(default=None, repr=False, compare=False)
    #: out-of-sample shrinkage of the point forecast (bqx.training.shrinkage); artifacts
    #: pickled before it existed load without the attribute and predict unshrunk
    shrink: Shrinkage = IDENTITY

    # ---- prediction --------------------------------------------------------------------
    @property
    def fast(self) -> Any:
        if self._fast is None:
            from bqx.training.fastpredict import FastPredictor

            self._fast = FastPredictor(self.pipeline, self.all_columns)
        return self._fast

    @property
    def shrinkage(self) -> Shrinkage:
        return getattr(self, "shrink", IDENTITY)

    @property
    def needed_columns(self) -> tuple[str, ...]:
        """The candidate columns serving must compute for this model: its selected features
        and the feature its intervals scale by (the online path computes only these)."""
        extra = self.conformal.scale_feature
        cols = list(self.features)
        if extra and extra not in cols:
            cols.append(extra)
        return tuple(cols)

    def predict_frame(self, X: pd.DataFrame) -> np.ndarray:
        """Batch prediction (shrunk) from a frame holding (at least) the selected columns."""
        return self.shrinkage.apply(np.asarray(self.pipeline.predict(X), dtype=np.float64))

    def predict_vector(self, x: np.ndarray) -> float:
        """One forecast (shrunk) from the full candidate vector (``all_columns`` order): the
        serving path."""
        return self.fast.predict_one(x) * self.shrinkage.beta

    def scale_of(self, x: np.ndarray) -> float | None:
        if self.conformal.scale_feature is None:
            return None
        return float(x[self.all_columns.index(self.conformal.scale_feature)])

    def interval(self, yhat: float, x: np.ndarray) -> tuple[float, float]:
        c = self.conformal
        if c.method == "scaled" and c.scale_feature is not None:
            # Conformal.bounds on one value, in float arithmetic (the same IEEE operations
            # as its one-element arrays: max(scale, floor) keeping NaN, q * scale, yhat -/+)
            s = float(x[self.all_columns.index(c.scale_feature)])
            hw = c.q * (_FLOOR if s < _FLOOR else s)
            return float(float(yhat) - hw), float(float(yhat) + hw)
        lo, hi = c.bounds(np.array([yhat]), self.scale_of(x))
        return float(lo[0]), float(hi[0])

    def intervals_frame(self, yhat: np.ndarray, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        s = (
            X[self.conformal.scale_feature].to_numpy(np.float64)
            if self.conformal.scale_feature
            else None
        )
        return self.conformal.bounds(yhat, s)

    # ---- persistence -------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "model": self.model,
            "params": self.params,
            "features": self.features,
            "feature_set_version": self.feature_set_version,
            "horizon": self.horizon,
            "target": self.target,
            "conformal": self.conformal.as_dict(),
            "shrinkage": self.shrinkage.as_dict(),
            "metrics": self.metrics,
            "data_window": self.data_window,
            "selection": self.selection,
            "created_at": self.created_at,
        }

    def save(self, directory: Path) -> Path:
        """Write ``artifact.joblib`` (the whole object) and ``meta.json`` (readable summary).

        joblib/pickle is used because the artifact holds LightGBM/XGBoost boosters and our own
        selector class; artifacts come only from our own training runs (a trusted store).
        """
        import json

        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        fast, self._fast = self._fast, None
        try:
            joblib.dump(self, directory / ARTIFACT_FILE, compress=3)
        finally:
            self._fast = fast
        (directory / META_FILE).write_text(json.dumps(self.meta(), indent=1, default=_json_default))
        return directory

    @staticmethod
    def load(directory: Path) -> ModelArtifact:
        import joblib

        obj = joblib.load(Path(directory) / ARTIFACT_FILE)
        if not isinstance(obj, ModelArtifact):
            raise TypeError(f"{directory} does not hold a BQX model artifact")
        return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    return str(o)
