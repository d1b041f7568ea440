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
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.errors import BqxError
from bqx.monitoring.drift import (
    DEFAULT_BINS,
    MARKET_REL,
    MARKET_VOL,
    ColumnBaseline,
    build_baseline,
    relative_column,
)

log = logging.getLogger(__name__)

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
    market: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The JSON-ready baseline of a training segment (``Xtr`` rows, their predictions
    ``pred`` and targets ``y``). The market column :data:`~bqx.monitoring.drift.MARKET_VOL`
    (realised volatility, a candidate column of every training frame) is baselined beside
    the selected features when ``Xtr`` holds it, whether the model selected it or not
    (serving captures it beside the features: :mod:`bqx.monitoring.capture`). With
    ``market`` (the other pairs' rvol_60 at the same rows: :func:`market_rvol`) the pair's
    volatility relative to the market (:data:`~bqx.monitoring.drift.MARKET_REL`) is
    baselined too, with the centres the pass needs."""
    cols = {f: Xtr[f].to_numpy(np.float64) for f in features if f in Xtr}
    if MARKET_VOL in Xtr and MARKET_VOL not in cols:
        cols[MARKET_VOL] = Xtr[MARKET_VOL].to_numpy(np.float64)
    centers: dict[str, float] = {}
    if market and MARKET_VOL in Xtr:
        rel, centers = relative_column(Xtr[MARKET_VOL].to_numpy(np.float64), market)
        # the bars where it is defined (enough of the others stored), as the pass tests it
        rel = rel[np.isfinite(rel)]
        if centers and len(rel):
            cols[MARKET_REL] = rel
    cols[PRED] = np.asarray(pred, np.float64)
    cols[TARGET] = np.asarray(y, np.float64)
    base = build_baseline(cols, bins)
    if MARKET_REL in base:
        base[MARKET_REL] = replace(base[MARKET_REL], centers=centers)
    return {"bins": bins, "rows": len(Xtr), "columns": {k: v.as_dict() for k, v in base.items()}}


def market_rvol(store: Any, pair: str, index: pd.Index) -> pd.DataFrame:
    """rvol_60 of every other pair in the feature ``store`` at the timestamps ``index`` (the
    pair's training rows; NaN where a pair has no stored row): what
    :func:`training_baseline` needs for :data:`~bqx.monitoring.drift.MARKET_REL`. Reads one
    column per pair and month (cached in the process: ``FeatureStore.read_column``). Empty
    when the store holds no other pair (the version then has no relative column: its pass
    runs without that test)."""
    from bqx.universe import PAIRS

    out: dict[str, np.ndarray] = {}
    if not len(index):
        return pd.DataFrame(index=index)
    lo, hi = index.min(), index.max()
    for other in PAIRS:
        if other == pair or not store.months(other):
            continue
        try:
            s = store.read_column(other, MARKET_VOL, lo, hi)
        except Exception:  # a pair the store cannot give: left out (the others suffice)
            log.warning("no stored %s for %s's market column", MARKET_VOL, other, exc_info=True)
            continue
        s = s[~s.index.duplicated(keep="last")]
        out[other] = s.reindex(index).to_numpy(np.float64)
    return pd.DataFrame(out, index=index)


def market_at(market: pd.DataFrame | None, index: pd.Index) -> dict[str, np.ndarray] | None:
    """The columns of :func:`market_rvol`'s frame at the rows ``index`` (None: none)."""
    if market is None or not market.shape[1]:
        return None
    m = market.reindex(index)
    return {str(c): m[c].to_numpy(np.float64) for c in m.columns}


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
