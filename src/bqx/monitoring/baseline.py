"""Baselines frozen at training time and stored with the model version.

A baseline holds, per selected feature and for ``prediction`` and ``target``, the
training segment's frozen quantile bin edges, bin shares, mean, std, min, max,
percentiles and missing rate (:class:`bqx.monitoring.drift.ColumnBaseline`). It is the
reference drift is measured against, so it must come from the training rows only.

Stored as ``monitoring_baseline.json`` in the version's ``model/`` MLflow artifact
directory (written by :meth:`bqx.registry.Registry.log_and_register`); versions trained
before this existed get one with ``bqx monitor baseline PAIR VERSION``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.errors import BqxError
from bqx.monitoring.drift import DEFAULT_BINS, MARKET_VOL, ColumnBaseline, build_baseline

BASELINE_FILE = "monitoring_baseline.json"
PRED, TARGET = "prediction", "target"


class BaselineMissingError(BqxError):
    """A model version has no monitoring baseline."""


def training_baseline(
    Xtr: pd.DataFrame,
    features: list[str],
    pred: np.ndarray,
    y: np.ndarray,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The JSON-ready baseline of a training segment (``Xtr`` rows, their predictions
    ``pred`` and targets ``y``). The market column :data:`~bqx.monitoring.drift.MARKET_VOL`
    (realised volatility, a candidate column of every training frame) is baselined beside
    the selected features when ``Xtr`` holds it, whether the model selected it or not
    (serving captures it beside the features: :mod:`bqx.monitoring.capture`)."""
    cols = {f: Xtr[f].to_numpy(np.float64) for f in features if f in Xtr}
    if MARKET_VOL in Xtr and MARKET_VOL not in cols:
        cols[MARKET_VOL] = Xtr[MARKET_VOL].to_numpy(np.float64)
    cols[PRED] = np.asarray(pred, np.float64)
    cols[TARGET] = np.asarray(y, np.float64)
    base = build_baseline(cols, bins)
    return {"bins": bins, "rows": len(Xtr), "columns": {k: v.as_dict() for k, v in base.items()}}


def parse_baseline(d: dict[str, Any]) -> dict[str, ColumnBaseline]:
    return {k: ColumnBaseline.from_dict(v) for k, v in d["columns"].items()}


def write_baseline(model_dir: Path, baseline: dict[str, Any]) -> Path:
    p = Path(model_dir) / BASELINE_FILE
    p.write_text(json.dumps(baseline, allow_nan=False, default=_none))
    return p


def _none(x: Any) -> Any:  # pragma: no cover - json fallback
    return None


def load_baseline(registry: Any, pair: str, version: str | int) -> dict[str, Any]:
    """The stored baseline of ``pair`` ``version``; :class:`BaselineMissingError` naming
    the command that makes one when the version has none."""
    info = registry.get(pair, version)
    local_file = _local_artifact(f"{info.source}/{BASELINE_FILE}")
    if local_file is not None:  # local artifact store: read it (no MLflow import, ~1.5 s)
        try:
            return dict(json.loads(local_file.read_text()))
        except FileNotFoundError:
            pass  # fall through: MLflow's answer (and its error) decides
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{info.source}/{BASELINE_FILE}", tracking_uri=registry.uri
        )
    except Exception as e:
        raise BaselineMissingError(
            f"version {version} of {pair} has no monitoring baseline",
            hint=f"make one with `bqx monitor baseline {pair} {version}`",
        ) from e
    return dict(json.loads(Path(local).read_text()))


def _local_artifact(uri: str) -> Path | None:
    """The path of a ``file://`` (or plain path) artifact URI, None for remote stores
    (``s3://``, ``mlflow-artifacts:``, ``http(s)://``, ``runs:/``, ``models:/``)."""
    from urllib.parse import unquote, urlparse

    u = urlparse(uri)
    if u.scheme == "file" and u.netloc in ("", "localhost"):
        return Path(unquote(u.path))
    if u.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def save_baseline(registry: Any, pair: str, version: str | int, baseline: dict[str, Any]) -> None:
    """Attach a baseline to an existing version (its run's ``model/`` artifact dir)."""
    info = registry.get(pair, version)
    registry.client.log_dict(info.run_id, baseline, f"model/{BASELINE_FILE}")
