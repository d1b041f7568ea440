"""Train one pair: read candidates, split with purge gaps, select on train, fit, calibrate
intervals on the later half of validation (rows the tuner never scored), evaluate on test
against naive baselines."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bqx.config import Settings, load_settings
from bqx.errors import NoDataError
from bqx.features import columns, feature_set_version
from bqx.monitoring.baseline import market_at, training_baseline
from bqx.training.artifact import ModelArtifact
from bqx.training.intervals import SCALE_FEATURE, calibrate, coverage
from bqx.training.metrics import (
    baselines,
    beats_naive,
    beats_naive_confident,
    regression_metrics,
    skill_estimates,
)
from bqx.training.models import (
    default_params,
    fit_pipeline,
    make_estimator,
    make_pipeline,
    resolve_params,
)
from bqx.training.selection import select_features
from bqx.training.shrinkage import Shrinkage, fit_shrinkage
from bqx.training.splits import chrono_split, tuning_calibration_split
from bqx.universe import normalize_pair

log = logging.getLogger(__name__)

#: rows whose candidates are mostly NaN (the warm-up before the longest lookback) are dropped
MAX_NAN_SHARE = 0.2


@dataclass
class TrainResult:
    pair: str
    artifact: ModelArtifact
    metrics: dict[str, Any]
    approved: bool
    approval_reason: str
    seconds: dict[str, float]
    rows: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        t = self.metrics["test"]
        base = self.metrics["baselines_test"]
        return {
            "pair": self.pair,
            "model": self.artifact.model,
            "features": len(self.artifact.features),
            "rows_train": self.rows["train"],
            "test_r2": t["r2"],
            "test_da": t["da"],
            "naive_r2": max(v["r2"] for v in base.values()),
            "coverage": self.metrics["test_coverage"],
            "approved": self.approved,
            "seconds": round(self.seconds["total"], 1),
        }


def _feature_store(settings: Settings) -> Any:
    from bqx.features.store import FeatureStore

    return FeatureStore(
        settings.features_dir,
        horizon=settings.horizon,
        target=settings.target,
        max_ffill=settings.max_ffill_bars,
    )


def load_training_frame(
    pair: str, settings: Settings, start: Any = None, end: Any = None
) -> pd.DataFrame:
    """Candidates + target of ``pair`` from the feature store (build it first)."""
    return _feature_store(settings).read(pair, start, end)


def training_market(pair: str, settings: Settings, index: pd.Index) -> pd.DataFrame | None:
    """The other pairs' rvol_60 from the feature store at ``index`` (for the monitoring
    baseline's relative-volatility column); None when the store cannot give it - the
    version then trains as before, without that column."""
    from bqx.monitoring.baseline import market_rvol

    try:
        m = market_rvol(_feature_store(settings), pair, index)
    except Exception:
        log.warning("no market column for %s's baseline", pair, exc_info=True)
        return None
    return m if m.shape[1] else None


def prepare(df: pd.DataFrame, *, require_target: bool = True) -> pd.DataFrame:
    """Drop rows without a target and warm-up rows that are mostly NaN.

    ``require_target=False`` keeps rows whose (future) target is unknown: rows to *predict or
    trade* must be chosen on information at t only (features), never on the future target."""
    y = df["target"].to_numpy()
    X = df.drop(columns=["target"])
    nan_share = np.isnan(X.to_numpy(dtype=np.float32)).mean(axis=1)
    keep = (np.isfinite(y) | (not require_target)) & (nan_share <= MAX_NAN_SHARE)
    if not keep.any():
        raise NoDataError("no usable training rows (all targets NaN or features in warm-up)")
    return df.iloc[np.flatnonzero(keep)]


@dataclass
class Fitted:
    """What :func:`fit_model` returns: the production fitting step, shared by training and the
    walk-forward backtest."""

    pipeline: Any
    selection: Any
    conformal: Any
    params: dict[str, Any]
    val_pred: np.ndarray  # shrunk
    seconds: dict[str, float]
    shrink: Shrinkage | None = None

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The shrunk forecast, as the stored version predicts."""
        raw = np.asarray(self.pipeline.predict(X), dtype=np.float64)
        return self.shrink.apply(raw) if self.shrink is not None else raw


def fit_model(
    Xtr: pd.DataFrame,
    ytr: np.ndarray,
    Xcal: pd.DataFrame,
    ycal: np.ndarray,
    settings: Settings,
    *,
    model: str,
    params: dict[str, Any] | None = None,
    n_jobs: int = 1,
    selection_rows: int | None = None,
) -> Fitted:
    """Select features on ``Xtr`` only, fit the pipeline on ``Xtr``, calibrate the conformal
    interval on the later ``Xcal`` segment (which the caller separated by a purge gap)."""
    ts = settings.train
    t0, c0 = time.perf_counter(), time.process_time()
    sel = select_features(
        Xtr, ytr, threshold=ts.selection_threshold, max_features=ts.max_features,
        rows=selection_rows if selection_rows is not None else ts.selection_rows,
        seed=ts.seed, n_jobs=n_jobs, params=ts.selection_params or None,
        engine=ts.selection_engine,
    )  # fmt: skip
    t_sel, c_sel = time.perf_counter() - t0, time.process_time() - c0
    p = default_params(model)
    p.update(params or {})
    p = resolve_params(model, p, len(sel.features))
    pipe = make_pipeline(sel.features, make_estimator(model, p, n_jobs=n_jobs))
    t1, c1 = time.perf_counter(), time.process_time()
    fit_pipeline(pipe, Xtr, ytr, p)
    t_fit, c_fit = time.perf_counter() - t1, time.process_time() - c1
    pcal = np.asarray(pipe.predict(Xcal), dtype=np.float64)
    shrink = fit_shrinkage(
        ycal, pcal, settings.horizon
    )  # out of sample; intervals are calibrated around it
    pcal = shrink.apply(pcal)
    scale = Xcal[SCALE_FEATURE].to_numpy(np.float64) if ts.interval_method == "scaled" else None
    conf = calibrate(ycal, pcal, scale, level=ts.interval_level, method=ts.interval_method)
    # wall seconds and CPU seconds (all threads of this process) of the two costly steps
    secs = {"selection": t_sel, "fit": t_fit, "selection_cpu": c_sel, "fit_cpu": c_fit}
    return Fitted(pipe, sel, conf, p, pcal, secs, shrink)


def train_frame(
    pair: str,
    df: pd.DataFrame,
    settings: Settings | None = None,
    *,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    selection_rows: int | None = None,
    market: pd.DataFrame | None = None,
) -> TrainResult:
    """Train on a prepared frame of candidates + ``target`` (time-ordered). ``market``: the
    other pairs' rvol_60 by timestamp (:func:`bqx.monitoring.baseline.market_rvol`), for
    the monitoring baseline's relative-volatility column (None: the baseline has none)."""
    s = settings or load_settings()
    ts = s.train
    model = model or ts.model
    pair = normalize_pair(pair)
    jobs = n_jobs or max(1, os.cpu_count() or 1)
    t0 = time.perf_counter()
    df = prepare(df)
    gap = s.horizon + 1
    sp = chrono_split(len(df), ts.train_frac, ts.val_frac, gap)
    X = df.drop(columns=["target"])
    y = df["target"].to_numpy(dtype=np.float64)
    Xtr, Xva, Xte = X.iloc[sp.train], X.iloc[sp.val], X.iloc[sp.test]
    ytr, yva, yte = y[sp.train], y[sp.val], y[sp.test]

    # calibrate on validation rows the tuner never scored (see tuning_calibration_split)
    _, cal = tuning_calibration_split(sp.val, gap)
    fitted = fit_model(
        Xtr,
        ytr,
        X.iloc[cal],
        y[cal],
        s,
        model=model,
        params=params,
        n_jobs=jobs,
        selection_rows=selection_rows,
    )
    sel, pipe, conf, p = fitted.selection, fitted.pipeline, fitted.conformal, fitted.params
    t_sel, t_fit = fitted.seconds["selection"], fitted.seconds["fit"]
    pva = fitted.predict(Xva)
    pte = fitted.predict(Xte)
    scale_te = Xte[SCALE_FEATURE].to_numpy(np.float64) if ts.interval_method == "scaled" else None
    lo, hi = conf.bounds(pte, scale_te)
    ptr = fitted.predict(Xtr)  # shrunk, as served (also the monitoring baseline)
    metrics: dict[str, Any] = {
        "train": regression_metrics(ytr, ptr),
        "val": regression_metrics(yva, pva),
        "test": regression_metrics(yte, pte),
        "baselines_val": baselines(yva, lag=s.horizon),
        "baselines_test": baselines(yte, lag=s.horizon),
        "test_coverage": coverage(yte, lo, hi),
        "interval_level": ts.interval_level,
    }
    metrics.update(uncertainty(yte, pte, lo, hi, s.horizon, ts.approval_level))
    if ts.approval_rule == "beats_naive" and ts.approval_level > 0:
        approved, why = beats_naive_confident(
            metrics["test"], metrics["skill_test"], ts.approval_level
        )
    elif ts.approval_rule == "beats_naive":
        approved, why = beats_naive(metrics["test"], metrics["baselines_test"])
    elif ts.approval_rule == "always":
        approved, why = True, "approval rule 'always'"
    else:
        approved, why = False, "approval rule 'never': approve manually"
    idx = pd.DatetimeIndex(df.index)
    art = ModelArtifact(
        pair=pair,
        model=model,
        params=p,
        pipeline=pipe,
        features=list(sel.features),
        all_columns=columns(),
        feature_set_version=feature_set_version(),
        horizon=s.horizon,
        target=s.target,
        conformal=conf,
        metrics=metrics,
        data_window={
            **sp.bounds(idx),
            "calibration": [idx[cal[0]].isoformat(), idx[cal[-1]].isoformat()],
        },
        selection={**sel.summary(), "importances": sel.importances.head(200).round(8).to_dict()},
        shrink=fitted.shrink or Shrinkage(1.0, 1.0, 0),
    )
    total = time.perf_counter() - t0
    return TrainResult(
        pair=pair,
        artifact=art,
        metrics=metrics,
        approved=approved,
        approval_reason=why,
        seconds={"selection": t_sel, "fit": t_fit, "total": total},
        rows={"train": len(sp.train), "val": len(sp.val), "test": len(sp.test), "gap": gap},
        # monitoring: drift reference frozen from the training segment (issue 12)
        extra={
            "baseline": training_baseline(
                Xtr, list(sel.features), ptr, ytr, market=market_at(market, Xtr.index)
            )
        },
    )


def uncertainty(
    y: np.ndarray, yhat: np.ndarray, lo: np.ndarray, hi: np.ndarray, horizon: int, level: float
) -> dict[str, Any]:
    """Test metrics with n_eff and 95 % HAC intervals, and the R² gain over each naive
    baseline at the approval ``level`` (95 % when the rule uses point estimates)."""
    from bqx.stats import metric_estimates

    est = metric_estimates(y, yhat, horizon=horizon, level=0.95, lo=lo, hi=hi)
    return {
        "test_estimates": {k: v.as_dict() for k, v in est.items()},
        "skill_test": skill_estimates(y, yhat, horizon, level or 0.95, lag=horizon),
    }


def train_pair(
    pair: str,
    settings: Settings | None = None,
    *,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    start: Any = None,
    end: Any = None,
    n_jobs: int | None = None,
) -> TrainResult:
    """Read the pair's candidates from the feature store and train (see :func:`train_frame`)."""
    s = settings or load_settings()
    pair = normalize_pair(pair)
    df = load_training_frame(pair, s, start, end)
    market = training_market(pair, s, df.index)
    res = train_frame(pair, df, s, model=model, params=params, n_jobs=n_jobs, market=market)
    if s.regime.enabled:
        from bqx.decision.regime import fit_for_artifact

        fit_for_artifact(res.artifact, s)
    return res
