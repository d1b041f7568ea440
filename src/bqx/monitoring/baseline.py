"""Training baselines: the reference distribution drift is measured against.

Computed once at training time (so bin edges are frozen - never re-derived from live data,
see STATISTICS-NOTES) for every selected feature, the prediction and the target:
decile bin edges, the share of rows per bin, mean/std/min/max, percentiles and the missing
rate. Features and target come from the training segment; the prediction from the
validation segment (out of sample, i.e. what serving produces - in-sample predictions of a
boosted model are more spread out than live ones).

Stored with the model version as the MLflow artifact ``baseline/baseline.json`` (small:
~1 kB per column). ``bqx monitor baseline PAIR VERSION`` computes it for older versions.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bqx.errors import BqxError

if TYPE_CHECKING:
    from bqx.registry import Registry

BASELINE_FORMAT = 1
ARTIFACT_DIR = "baseline"
ARTIFACT_FILE = "baseline.json"
PREDICTION = "__prediction__"
TARGET = "__target__"
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
DEFAULT_BINS = 10


class BaselineMissingError(BqxError):
    """The model version has no stored baseline (trained before baselines existed)."""


def bin_index(edges: np.ndarray | list[float], x: np.ndarray) -> np.ndarray:
    """Bin of each value: bin i holds ``edges[i-1] < x <= edges[i]`` (live data uses the same)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="left")


def column_baseline(x: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Baseline of one column (units: the column's own). Interior edges are the
    ``bins``-quantiles of the finite values, deduplicated (discrete features get fewer bins);
    ``shares[i]`` is the share of finite values in bin i (see :func:`bin_index`).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    fin = x[np.isfinite(x)]
    out: dict[str, Any] = {"n": n, "missing_rate": float(1 - len(fin) / n) if n else 1.0}
    if not len(fin):
        out.update(edges=[], shares=[1.0], mean=None, std=None, min=None, max=None)
        out["percentiles"] = {}
        return out
    qs = np.quantile(fin, np.arange(1, bins) / bins, method="inverted_cdf")
    edges = np.unique(qs)
    edges = edges[edges < fin.max()]  # an edge at the maximum would leave the top bin empty
    counts = np.bincount(bin_index(edges, fin), minlength=len(edges) + 1)
    out.update(
        edges=[float(e) for e in edges],
        shares=[float(c) for c in counts / len(fin)],
        mean=float(fin.mean()),
        std=float(fin.std()),
        min=float(fin.min()),
        max=float(fin.max()),
        percentiles={
            f"p{p:02d}": float(v)
            for p, v in zip(PERCENTILES, np.percentile(fin, PERCENTILES), strict=True)
        },
    )
    return out


def compute_baseline(
    X: pd.DataFrame,
    y: np.ndarray | None = None,
    yhat: np.ndarray | None = None,
    *,
    bins: int = DEFAULT_BINS,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline document (JSON-serialisable) of the columns of ``X`` (+ target, prediction)."""
    cols: dict[str, Any] = {str(c): column_baseline(X[c].to_numpy(), bins) for c in X.columns}
    if yhat is not None:
        cols[PREDICTION] = column_baseline(np.asarray(yhat), bins)
    if y is not None:
        cols[TARGET] = column_baseline(np.asarray(y), bins)
    return {"format": BASELINE_FORMAT, "bins": bins, "meta": dict(meta or {}), "columns": cols}


def baseline_from_training(
    X: pd.DataFrame,
    features: list[str],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    y: np.ndarray,
    val_pred: np.ndarray,
) -> dict[str, Any]:
    """Called by training: selected features + target of the train segment, val predictions."""
    Xtr = X.iloc[train_idx][features]
    idx = pd.DatetimeIndex(X.index)
    meta = {
        "features_from": [idx[train_idx[0]].isoformat(), idx[train_idx[-1]].isoformat()]
        if len(train_idx)
        else [],
        "prediction_from": [idx[val_idx[0]].isoformat(), idx[val_idx[-1]].isoformat()]
        if len(val_idx)
        else [],
    }
    return compute_baseline(Xtr, y[train_idx], val_pred, meta=meta)


def log_baseline(run_id: str, baseline: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    """Attach the baseline to an MLflow run as ``baseline/baseline.json``."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / ARTIFACT_FILE
        p.write_text(json.dumps(baseline))
        MlflowClient(tracking_uri=tracking_uri).log_artifact(run_id, str(p), ARTIFACT_DIR)


def load_baseline(
    registry: Registry, pair: str, version: str | int | None = None
) -> dict[str, Any]:
    """The stored baseline of a version (default: production); raises a clear error if absent."""
    import mlflow.artifacts

    info = registry.get(pair, version)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=info.run_id,
            artifact_path=f"{ARTIFACT_DIR}/{ARTIFACT_FILE}",
            tracking_uri=registry.uri,
        )
    except Exception as e:  # mlflow raises MlflowException / OSError for a missing file
        raise BaselineMissingError(
            f"{info.pair} v{info.version} has no monitoring baseline; compute it with "
            f"`bqx monitor baseline {info.pair} {info.version}`"
        ) from e
    doc: dict[str, Any] = json.loads(Path(local).read_text())
    return doc


def build_baseline_for_version(
    registry: Registry, pair: str, version: str | int, settings: Any = None
) -> dict[str, Any]:
    """Recompute and store the baseline of an older version from the feature store.

    Uses the version's own data window (train segment for features + target, validation
    segment for the predictions), so it equals what training would have stored.
    """
    from bqx.config import load_settings
    from bqx.training.train import load_training_frame, prepare

    s = settings or load_settings()
    info = registry.get(pair, version)
    art = registry.load(info.pair, version=info.version)
    win = art.data_window
    if not win.get("train") or not win.get("val"):
        raise BqxError(f"{info.pair} v{info.version} has no train/val data window")
    df = load_training_frame(info.pair, s, win["train"][0], win["val"][1])
    df = prepare(df)
    ts = pd.DatetimeIndex(df.index)
    tr = np.flatnonzero(
        (ts >= pd.Timestamp(win["train"][0])) & (ts <= pd.Timestamp(win["train"][1]))
    )
    va = np.flatnonzero((ts >= pd.Timestamp(win["val"][0])) & (ts <= pd.Timestamp(win["val"][1])))
    X = df.drop(columns=["target"])
    y = df["target"].to_numpy(dtype=np.float64)
    pva = np.asarray(art.predict_frame(X.iloc[va]), dtype=np.float64)
    doc = baseline_from_training(X, list(art.features), tr, va, y, pva)
    log_baseline(info.run_id, doc, registry.uri)
    return doc


def summary_rows(doc: Mapping[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
    """Compact per-column rows for tables (``bqx models show``)."""
    rows = []
    for name, c in list(doc.get("columns", {}).items())[:limit]:
        rows.append(
            {
                "column": name,
                "bins": len(c["shares"]),
                "mean": c["mean"],
                "std": c["std"],
                "missing": c["missing_rate"],
            }
        )
    return rows


def baseline_status(registry: Registry, pair: str, version: str | int) -> dict[str, Any]:
    """For ``bqx models show``: whether the version has a baseline, and a one-line summary."""
    try:
        doc = load_baseline(registry, pair, version)
    except BaselineMissingError as e:
        return {"present": False, "text": str(e)}
    cols = doc.get("columns", {})
    pred = cols.get(PREDICTION) or {}
    text = f"{len(cols)} columns, {doc.get('bins')} bins"
    if pred.get("std") is not None:
        text += f"; prediction mean {pred['mean']:.3g} std {pred['std']:.3g}"
    return {"present": True, "text": text, "columns": len(cols), "bins": doc.get("bins")}
