"""Batch prediction: production models over a time range, on the BATCH feature path.

``bqx predict-batch --pairs ... --start --end --out file.parquet|csv`` reads the bars of all
28 pairs (cross features need them) from the store, from enough history before ``start``
for every feature's lookback up to ``end``, builds one :class:`~bqx.features.Panel`, and per
pair runs :func:`bqx.features.build` (vectorised over the whole range),
``artifact.predict_frame`` + ``intervals_frame`` and :func:`bqx.signals.decide_many`.

The numbers equal what the API answers for the same bars (the online and batch feature
paths are one implementation; tests compare them), so a batch run can back-fill the
decision history or feed a backtest with exactly the served signals. ``ts`` is the bar's
*open* time; the row uses that bar's close, so it is known at ``available_at`` = ts + one
bar interval (what the API returns when asked with ``timestamp = available_at``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import to_utc
from bqx.config import Settings, load_settings
from bqx.errors import BqxError, ModelNotFoundError, NoDataError
from bqx.training.validity import REASON as INSUFFICIENT
from bqx.training.validity import valid_rows
from bqx.universe import normalize_pairs

#: Output columns, in order.
BATCH_COLUMNS: tuple[str, ...] = (
    "pair",
    "ts",
    "available_at",
    "observed",
    "prediction",
    "lo",
    "hi",
    "confidence_level",
    "signal",
    "side",
    "strength",
    "reason",
    "threshold",
    "model",
    "model_version",
    "horizon_minutes",
)


@dataclass
class BatchResult:
    """The predictions plus what was skipped and where the time went (seconds)."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        t = self.seconds.get("total", 0.0)
        return len(self.frame) / t if t > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        f = self.frame
        return {
            "rows": len(f),
            "pairs": sorted(f["pair"].unique().tolist()) if len(f) else [],
            "skipped": self.skipped,
            "signals": {str(k): int(v) for k, v in f["signal"].value_counts().items()}
            if len(f)
            else {},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "rows_per_s": round(self.rows_per_s, 1) if len(f) else None,
        }


def read_window(store: Any, start: pd.Timestamp, end: pd.Timestamp, history: int) -> pd.DataFrame:
    """Bars of all pairs in ``[start, end]`` plus the ``history`` bars per pair before it."""
    before = store.read_asof(start - pd.Timedelta(microseconds=1), history)
    inside = store.read(None, start, end)
    df = pd.concat([before, inside], ignore_index=True)
    return df.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)


def predict_batch(
    pairs: Sequence[str] | str | None,
    start: Any,
    end: Any,
    settings: Settings | None = None,
    *,
    store: Any = None,
    registry: Any = None,
    artifacts: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Predictions, intervals and signals of the production models for every bar of
    ``pairs`` in ``[start, end]`` (UTC). Pairs without a production model are skipped and
    reported in :attr:`BatchResult.skipped`. ``artifacts`` (pair -> ModelArtifact) bypasses
    the registry (tests, benchmarks)."""
    from bqx import features as F
    from bqx.features import Panel
    from bqx.serving.cache import window_rows
    from bqx.signals import decide_many, volatility_ratio

    s = settings or load_settings()
    plist = normalize_pairs(pairs)
    t_start, t_end = to_utc(start), to_utc(end)
    if t_end < t_start:
        raise BqxError(f"--end {t_end} is before --start {t_start}")
    t0 = time.perf_counter()
    sec: dict[str, float] = {}
    skipped: dict[str, str] = {}
    arts: dict[str, Any] = dict(artifacts or {})
    if artifacts is None:
        if registry is None:
            from bqx.registry import Registry

            registry = Registry(s)
        for p in plist:
            try:
                arts[p] = registry.load(p)
            except ModelNotFoundError:
                skipped[p] = "no production model"
    sec["load_models"] = time.perf_counter() - t0
    todo = [p for p in plist if p in arts]
    if not todo:
        raise NoDataError(
            "none of the requested pairs has a production model",
            hint="train and promote models first (`bqx train --promote`)",
        )
    t1 = time.perf_counter()
    if store is None:
        from bqx.data.store import open_store

        store = open_store(settings=s)
    history = window_rows(s.max_ffill_bars, s.signals.vol_scaling, hot=0)
    bars = read_window(store, t_start, t_end, history)
    sec["read_bars"] = time.perf_counter() - t1
    if not len(bars):
        raise NoDataError(f"no bars between {t_start} and {t_end}")
    t2 = time.perf_counter()
    panel = Panel.from_bars(bars, interval=s.interval, max_ffill=s.max_ffill_bars)
    sec["panel"] = time.perf_counter() - t2
    minutes = pd.Timedelta(s.interval).total_seconds() / 60.0
    parts: list[pd.DataFrame] = []
    sec["features"] = sec["predict"] = 0.0
    for i, p in enumerate(todo):
        if p not in panel.pairs:
            skipped[p] = "no bars in the range"
            continue
        ta = time.perf_counter()
        X = F.build(panel, p, start=t_start, end=t_end)
        tb = time.perf_counter()
        sec["features"] += tb - ta
        if not len(X):
            skipped[p] = "no bars in the range"
            continue
        art = arts[p]
        yhat = art.predict_frame(X)
        valid = valid_rows(art.features, X, s.serve.min_valid_features)
        yhat[~valid] = np.nan
        lo, hi = art.intervals_frame(yhat, X)
        j = panel.col(p)
        rows = np.searchsorted(panel.ts, pd.DatetimeIndex(X.index).asi8)
        part = pd.DataFrame(
            {
                "pair": p,
                "ts": X.index,
                # the bar's close: the row uses the bar opening at ts, known only then
                "available_at": pd.DatetimeIndex(X.index) + pd.Timedelta(s.interval),
                "observed": panel.observed[rows, j],
                "prediction": yhat,
                "lo": lo,
                "hi": hi,
                "confidence_level": float(art.conformal.level),
                "model": art.model,
                "model_version": str(art.version),
                "horizon_minutes": float(art.horizon * minutes),
                "valid_inputs": valid,
            }
        )
        if s.signals.vol_scaling:
            part["vol_ratio"] = volatility_ratio(panel.close[:, j])[rows]
        parts.append(part)
        sec["predict"] += time.perf_counter() - tb
        if progress is not None:
            progress(i + 1, len(todo))
    if not parts:
        raise NoDataError(f"no bars of {', '.join(todo)} between {t_start} and {t_end}")
    t3 = time.perf_counter()
    frame = pd.concat(parts, ignore_index=True)
    frame = decide_many(frame, s.signals)
    frame.loc[~frame["valid_inputs"].to_numpy(bool), "reason"] = INSUFFICIENT
    sec["signals"] = time.perf_counter() - t3
    frame = frame[[c for c in BATCH_COLUMNS if c in frame.columns]]
    sec["total"] = time.perf_counter() - t0
    return BatchResult(frame.reset_index(drop=True), skipped, sec)


def write_output(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``.parquet`` or ``.csv`` (chosen by the suffix), atomically."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BqxError(
            f"--out {path} must end in .parquet or .csv", hint="e.g. --out predictions.parquet"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    tmp.replace(path)
    return path
