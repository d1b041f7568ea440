"""Walk-forward out-of-sample predictions: retrain per window with the production code.

For each pair and each window (train ``train_months``, test the next ``test_months``, roll by
``test_months``; the last ``windows`` windows), the training months are split into a fitting
part and a later calibration part (``cal_frac``, separated by a purge gap of horizon + 1 rows);
:func:`bqx.training.train.fit_model` selects features on the fitting part only, fits the
pipeline and calibrates the conformal interval on the calibration part; the model then
predicts every bar of the test months. The test months start at least horizon + 1 rows after
the last training row, so no label of a training row can see a test bar.

Predictions are cached under ``<home>/backtests/cache/<key>.parquet``; the key covers the
pairs, the window layout, the model and parameters, the feature-set version and the feature
store's fingerprints, so ``--reuse-predictions`` never reuses stale predictions.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.config import Settings
from bqx.errors import BqxError, NoDataError
from bqx.universe import normalize_pairs


@dataclass(frozen=True)
class WalkForwardConfig:
    train_months: int = 6
    test_months: int = 1
    windows: int | None = 12
    model: str = "lgbm_rf"
    params: dict[str, Any] = field(default_factory=dict)
    cal_frac: float = 0.15


@dataclass(frozen=True)
class WindowSpec:
    pair: str
    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def _feature_store(s: Settings) -> Any:
    from bqx.features.store import FeatureStore

    return FeatureStore(
        s.features_dir, horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
    )


def plan_windows(pairs: Sequence[str], s: Settings, cfg: WalkForwardConfig) -> list[WindowSpec]:
    """The windows of every pair, from the rows that have a bar (test periods run to the last
    bar: whether a bar's future target is known must not decide whether it is traded)."""
    from bqx.training.splits import walk_forward

    fs = _feature_store(s)
    out: list[WindowSpec] = []
    for p in pairs:
        raw = fs.read_base(p)
        ok = raw["bar"].to_numpy(dtype=bool)
        idx = pd.DatetimeIndex(raw.index[ok])
        ws = walk_forward(idx, cfg.train_months, cfg.test_months, cfg.windows, gap=s.horizon + 1)
        if not ws:
            span = f"{idx[0]:%Y-%m-%d}..{idx[-1]:%Y-%m-%d}" if len(idx) else "no rows"
            raise NoDataError(
                f"{p}: not enough data for one window of {cfg.train_months}+{cfg.test_months} months ({span})",
                hint="generate/ingest more history or use fewer --train-months",
            )
        out += [
            WindowSpec(p, w.number, w.train_start, w.train_end, w.test_start, w.test_end)
            for w in ws
        ]
    return out


def predict_window(
    spec: WindowSpec,
    settings_data: dict[str, Any],
    cfg: WalkForwardConfig,
    n_jobs: int,
    timings: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Fit on the window's training months, predict its test months (runs in a worker).

    The candidates are computed once by the feature store (:func:`ensure_features`); a window
    reads its slice of them. ``timings`` (if given) receives the seconds of each stage."""
    from bqx.training.intervals import SCALE_FEATURE
    from bqx.training.train import fit_model, prepare
    from bqx.training.validity import valid_rows

    s = Settings.model_validate(settings_data)
    gap = s.horizon + 1
    tm = timings if timings is not None else {}
    t0, c0 = time.perf_counter(), time.process_time()
    raw = _feature_store(s).read(spec.pair, spec.train_start, spec.test_end)
    tm["read"] = time.perf_counter() - t0
    tm["read_cpu"] = time.process_time() - c0
    train = prepare(raw[raw.index <= spec.train_end])
    # test rows are chosen on feature validity only: a bar whose target is not known yet (before
    # a gap, at the end of data) is still traded; its NaN y_true is left out of the metrics
    test = prepare(raw[raw.index >= spec.test_start], require_target=False)
    n_cal = int(len(train) * cfg.cal_frac)
    fit_rows = len(train) - n_cal - gap
    if fit_rows < 1000 or n_cal < 100 or test.empty:
        raise NoDataError(
            f"{spec.pair} window {spec.number}: too few rows ({len(train)} train, {len(test)} test)"
        )
    Xf, yf = (
        train.iloc[:fit_rows].drop(columns=["target"]),
        train["target"].to_numpy(np.float64)[:fit_rows],
    )
    Xc, yc = (
        train.iloc[-n_cal:].drop(columns=["target"]),
        train["target"].to_numpy(np.float64)[-n_cal:],
    )
    t0 = time.perf_counter()
    fitted = fit_model(Xf, yf, Xc, yc, s, model=cfg.model, params=cfg.params or None, n_jobs=n_jobs)
    tm.update(fitted.seconds)
    tm["fit_and_calibrate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Xt = test.drop(columns=["target"])
    pred = fitted.predict(Xt)
    pred[~valid_rows(fitted.selection.features, Xt, s.serve.min_valid_features)] = np.nan
    scale = Xt[SCALE_FEATURE].to_numpy(np.float64) if fitted.conformal.scale_feature else None
    lo, hi = fitted.conformal.bounds(pred, scale)
    tm["predict"] = time.perf_counter() - t0
    out = pd.DataFrame(
        {
            "pair": spec.pair,
            "ts": test.index,
            "prediction": pred,
            "lo": lo,
            "hi": hi,
            "y_true": test["target"].to_numpy(np.float64),
            "window": spec.number,
            "train_start": spec.train_start,
            "train_end": spec.train_end,
            "test_start": spec.test_start,
            "test_end": spec.test_end,
            "n_features": len(fitted.selection.features),
        }
    )
    # the window's selected features travel with its frame (collected into the run's info)
    out.attrs["features"] = list(fitted.selection.features)
    return out


def _task(
    spec: WindowSpec, data: dict[str, Any], cfg: WalkForwardConfig, n_jobs: int
) -> tuple[WindowSpec, pd.DataFrame | None, str | None, dict[str, float]]:
    t0, c0 = time.perf_counter(), time.process_time()
    tm: dict[str, float] = {}
    try:
        df, err = predict_window(spec, data, cfg, n_jobs, tm), None
    except BqxError as e:
        df, err = None, str(e)
    except Exception as e:
        df, err = None, f"{type(e).__name__}: {e}"
    tm["total"] = time.perf_counter() - t0
    # CPU seconds of this worker process (all its threads): the work, whatever the box's load
    tm["cpu"] = time.process_time() - c0
    return spec, df, err, tm


def cache_key(pairs: Sequence[str], s: Settings, cfg: WalkForwardConfig) -> str:
    from bqx.features import feature_set_version

    man = _feature_store(s).manifest()
    parts = {
        k: v.get("fingerprint") for k, v in man.get("parts", {}).items() if k.split("/")[0] in pairs
    }
    payload = {
        "pairs": sorted(pairs),
        "cfg": asdict(cfg),
        "features": feature_set_version(),
        "horizon": s.horizon,
        "target": s.target,
        "train": s.train.model_dump(mode="json", exclude={"jobs", "ray_address"}),
        "parts": parts,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def walk_forward_predictions(
    pairs: Sequence[str] | str | None,
    settings: Settings,
    cfg: WalkForwardConfig,
    *,
    jobs: int | None = None,
    reuse: bool = False,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "local",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-sample predictions of every window of every pair; returns (frame, info)."""
    plist = normalize_pairs(pairs)
    s = settings
    key = cache_key(plist, s, cfg)
    cache = s.home / "backtests" / "cache" / f"{key}.parquet"
    if reuse:
        if not cache.exists():
            raise BqxError(
                "no cached walk-forward predictions for these pairs, windows, model and data",
                hint="run once without --reuse-predictions",
            )
        return pd.read_parquet(cache), {
            "cache": str(cache),
            "reused": True,
            "key": key,
            "errors": {},
        }
    specs = plan_windows(plist, s, cfg)
    data = s.model_dump(mode="json")
    data["home"] = str(s.home.resolve())
    frames: list[pd.DataFrame] = []
    errors: dict[str, str] = {}
    window_seconds: dict[str, dict[str, float]] = {}
    selected: dict[str, list[str]] = {}
    t0 = time.perf_counter()

    def handle(
        spec: WindowSpec, df: pd.DataFrame | None, err: str | None, tm: dict[str, float]
    ) -> None:
        window_seconds[f"{spec.pair}/{spec.number}"] = {k: round(v, 2) for k, v in tm.items()}
        if df is not None:
            selected[f"{spec.pair}/{spec.number}"] = list(df.attrs.get("features", []))
            frames.append(df)
        else:
            errors[f"{spec.pair}/{spec.number}"] = err or "unknown error"
        if progress:
            progress(len(frames) + len(errors), len(specs))

    from bqx.cluster.executor import Call, Executor

    # one task per (pair, window): the natural unit of parallelism (process pool or Ray)
    ex_jobs = min(jobs or s.train.jobs, len(specs))
    with Executor(s, backend, ex_jobs) as ex:
        threads = ex.threads_per_task(len(specs))
        calls = [Call(_task, (sp, data, cfg, threads), sp.pair) for sp in specs]
        for d in ex.map(calls):
            if d.value is None:
                handle(specs[d.index], None, d.error, {"total": d.seconds})
            else:
                handle(*d.value)
    if not frames:
        raise BqxError(
            "every walk-forward window failed: "
            + "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:3])
        )
    out = (
        pd.concat(frames, ignore_index=True)
        .sort_values(["pair", "ts"], kind="stable")
        .reset_index(drop=True)
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(cache, index=False)
    info = {
        "cache": str(cache),
        "reused": False,
        "key": key,
        "windows": len(specs),
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 1),
        "jobs": ex_jobs,
        "window_seconds": window_seconds,
        "selected_features": selected,
    }
    return out, info


def windows_frame(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, window) with the window bounds (for the report's window table)."""
    cols = ["pair", "window", "train_start", "train_end", "test_start", "test_end", "n_features"]
    return pred[cols].drop_duplicates(["pair", "window"]).reset_index(drop=True)


def ensure_features(
    pairs: Sequence[str],
    s: Settings,
    progress: Callable[[int, int], None] | None = None,
    jobs: int = 1,
) -> Path:
    """Bring the feature store up to date for ``pairs`` (incremental; pair-months in
    ``jobs`` processes)."""
    from bqx.data.store import open_store

    store = open_store(settings=s)
    try:
        _feature_store(s).build(store, list(pairs), progress=progress, jobs=jobs)
    finally:
        store.close()
    return Path(s.features_dir)
