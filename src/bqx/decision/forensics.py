"""Forensics: why the model said what it said, for every decision, computed off the request path.

For a logged decision the worker recomputes the candidate vector at the decision's as-of bar
from the bar store, checks its hash against the logged ``feature_hash`` (the audit proof
that the explanation is of the same input), loads the exact model version, and explains the
forecast with ``shap``: TreeExplainer for forests and boosted trees (rf, lgbm_rf, lightgbm,
xgboost), the linear explainer for ridge. (shap reads a LightGBM model as boosting, a sum of
its trees; in random-forest mode, ``lgbm_rf``, LightGBM averages them, so its values and base
are divided by the number of trees.) The SHAP values are of the SELECTED features after the
pipeline's scaling (the model's own inputs) and add up, with the base value, to the model
output; the additivity error is stored (must be < 1e-6, in target units).

The decision log is the outbox (:mod:`bqx.state.forensics`): ``bqx forensics run`` explains
what is pending once, ``bqx forensics worker`` follows continuously.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from bqx.errors import BqxError

log = logging.getLogger(__name__)

ADDITIVITY_TOL = 1e-6


class ForensicsError(BqxError):
    """A decision cannot be explained."""


def _final(art: Any) -> tuple[list[Any], Any]:
    """(transformers, final estimator) of the artifact's pipeline, flattening a nested
    Pipeline (ridge is wrapped with its own imputer)."""
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in art.pipeline.steps]
    while isinstance(steps[-1], Pipeline):
        steps = steps[:-1] + [s for _, s in steps[-1].steps]
    return steps[:-1], steps[-1]


def _explainer(art: Any) -> Any:
    """A cached shap explainer for the artifact's final estimator."""
    ex = getattr(art, "_shap_explainer", None)
    if ex is not None:
        return ex
    import shap

    est = _final(art)[1]
    if art.model == "ridge":
        n = len(art.features)
        ex = shap.LinearExplainer(est, shap.maskers.Independent(np.zeros((1, n))))
    else:
        ex = shap.TreeExplainer(est)
    art._shap_explainer = ex
    return ex


def shap_values(art: Any, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(SHAP values of the selected features, base value, model output) for one candidate
    vector ``x`` (``art.all_columns`` order)."""
    X: Any = pd.DataFrame(np.asarray(x, dtype=np.float64)[None, :], columns=art.all_columns)
    transformers, est = _final(art)
    for tr in transformers:
        X = tr.transform(X)
    Xt = np.asarray(X, dtype=np.float64)
    ex = _explainer(art)
    if art.model == "ridge":
        sv = np.asarray(ex.shap_values(Xt), dtype=np.float64).reshape(-1)
    else:
        sv = np.asarray(ex.shap_values(Xt, check_additivity=False), dtype=np.float64).reshape(-1)
    base = float(np.asarray(ex.expected_value).reshape(-1)[0])
    if art.model == "lgbm_rf":  # a forest averages its trees; shap sums them as boosting
        n_trees = int(est.booster_.num_trees())
        sv, base = sv / n_trees, base / n_trees
    out = float(np.asarray(est.predict(Xt)).reshape(-1)[0])
    # the served forecast is beta x the estimator's output (out-of-sample shrinkage, issue 10):
    # SHAP values are linear in the model, so the served forecast's are beta x these
    beta = float(art.shrinkage.beta) if hasattr(art, "shrinkage") else 1.0
    return sv * beta, base * beta, out * beta


def explain(
    art: Any,
    x: np.ndarray,
    *,
    decision: dict[str, Any] | None = None,
    feature_hash: str | None = None,
    top: int | None = None,
) -> dict[str, Any]:
    """The explanation record of one decision (JSON-ready)."""
    t0 = time.perf_counter()
    sv, base, out = shap_values(art, x)
    err = abs(base + float(sv.sum()) - out)
    order = np.argsort(-np.abs(sv))
    if top is not None:
        order = order[:top]
    d = decision or {}
    extra = d.get("extra") or {}
    logged_hash = d.get("feature_hash")
    rec: dict[str, Any] = {
        "decision_id": d.get("decision_id"),
        "pair": art.pair,
        "model": art.model,
        "model_version": str(art.version),
        "explainer": "linear" if art.model == "ridge" else "tree",
        "base_value": base,
        "model_output": out,
        "prediction_logged": d.get("prediction"),
        "additivity_error": err,
        "additive": bool(err < ADDITIVITY_TOL),
        "shap": [{"feature": art.features[i], "value": float(sv[i])} for i in order],
        "feature_hash": feature_hash,
        "feature_hash_logged": logged_hash,
        "feature_hash_match": (feature_hash == logged_hash) if logged_hash else None,
        "regime": extra.get("regime"),
        "risk": extra.get("risk"),
        "audit": {
            "request_time": str(d.get("request_time")) if d.get("request_time") else None,
            "asof_ts": str(d.get("asof_ts")) if d.get("asof_ts") else None,
            "key_id": d.get("key_id"),
            "route": extra.get("route") or extra.get("source"),
            "arm": extra.get("arm"),
            "signal": d.get("signal"),
        },
        "seconds": time.perf_counter() - t0,
    }
    return rec


def lower_priority(idle: bool = True, nice: int = 19) -> str:
    """Lower this process's CPU priority: Linux SCHED_IDLE when ``idle`` (the kernel runs
    it only when no normal-class thread is runnable), else / elsewhere ``nice``. Returns
    what was applied. Measured on 2 cores with the DuckDB store (docs/performance.md,
    decision layer), while the worker still opened the store for every decision: it took
    the worker off the client's p50 but raised its p99 more than nice 10 did (file-lock
    waits), so the CLI default is nice 10 only (not re-measured since the worker reads
    its bars once per batch)."""
    import os

    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            log.warning("SCHED_IDLE refused; using nice %d", nice)
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)
        return f"nice {nice}"
    return "unchanged"


class BatchBars:
    """The bar store as the worker sees it: ``read_asof`` answered from ONE window of bars
    read per batch of decisions (:meth:`load`), everything else delegated to the store.

    Why: the DuckDB store is one file under an exclusive lock per connection; a worker
    reading the bars of every decision separately (28 pairs x 1,346 bars each time) took
    that lock for every decision, and every client read that collided slept up to 250 ms
    (measured: docs/performance.md, decision layer). Per batch it is one connection, and
    while the worker follows the log, a read of the few bars since the previous batch.

    Exact: the answer is the last ``n`` bars at or before ``t`` of every stored pair, as
    :meth:`BarStore.read_asof`; when the window holds fewer than ``n`` bars of a stored
    pair at or before ``t`` (the start of the history, a long gap) the store is asked."""

    #: bars before the window's end read again on an incremental load (late corrections)
    REREAD_BARS = 10
    #: bars read past the batch's newest as-of time when the store has them
    READ_AHEAD_BARS = 240

    def __init__(self, store: Any, n: int) -> None:
        self.store = store
        self.n = n
        self.frame: pd.DataFrame | None = None
        self._present: set[str] = set()
        self._first: dict[str, int] = {}
        self._index: dict[str, tuple[int, int, np.ndarray]] = {}
        self._end: pd.Timestamp | None = None
        self._lo: pd.Timestamp | None = None
        #: store reads: windows loaded, and read_asof calls that had to go to the store
        self.loads = 0
        self.fallbacks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def covers(self, first: pd.Timestamp, last: pd.Timestamp) -> bool:
        """True when as-of reads at times in [first, last] need no store read."""
        from bqx.calendar import bars_lower_bound, to_utc

        if self.frame is None or self._lo is None or self._end is None:
            return False
        lo = bars_lower_bound(to_utc(first), self.n, self.store.interval)
        return bool(lo >= self._lo and to_utc(last) <= self._end)

    def invalidate(self) -> None:
        """Forget the window: the next as-of reads go to the store."""
        self.frame, self._lo, self._end, self._index = None, None, None, {}

    def load(self, first: pd.Timestamp, last: pd.Timestamp) -> bool:
        """Make as-of reads at times in [first, last] answerable from memory; returns
        whether the store was read. Nothing is read when the window already covers them.
        Otherwise, when the window reaches back far enough, only the bars after its end
        (and the last ``REREAD_BARS`` before it, for late corrections, as the API's bar
        cache does) are read, else the whole window; either way up to ``READ_AHEAD_BARS``
        past ``last`` when the store has them (decisions at later bars then need no read;
        a read at t slices bars <= t, so bars after t are never used). The window ends at
        the newest bar read: a bar stamped later that is not in the store yet is not
        claimed. One store connection."""
        from bqx.calendar import bars_lower_bound, to_utc

        first, last = to_utc(first), to_utc(last)
        if self.covers(first, last):
            return False
        step = pd.Timedelta(self.store.interval)
        lo = bars_lower_bound(first, self.n, self.store.interval)
        end = last + step * self.READ_AHEAD_BARS
        old = self.frame
        if old is not None and self._lo is not None and self._end is not None and lo >= self._lo:
            since = self._end - step * self.REREAD_BARS
            with self.store.hold(read_only=True):
                new = self.store.read(None, start=since, end=end)
            keep = old[(old["ts"] > lo) & (old["ts"] < since)]
            df = pd.concat([keep, new], ignore_index=True) if len(keep) else new
            df = df.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)
            self._present |= set(new["pair"].unique())
        else:
            with self.store.hold(read_only=True):
                # pairs with any bars (one without bars in the window is not "missing") and
                # their first bar (a window reaching before it holds all of its bars)
                stats = self.store._pair_stats()
                df = self.store.read(None, start=lo, end=end)
            self._present = set(stats["pair"])
            self._first = {
                str(p): pd.Timestamp(f).value
                for p, f in zip(stats["pair"], stats["first"], strict=True)
            }
            df = df[df["ts"] > lo].reset_index(drop=True)
        newest = df["ts"].max() if len(df) else None
        self.frame, self._lo = df, lo
        self._end = min(end, newest) if newest is not None and newest >= last else last
        self.loads += 1
        pairs = df["pair"].to_numpy()
        ts = df["ts"].to_numpy(dtype="datetime64[ns]").view("int64")
        self._index = {}
        if len(df):
            starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
            ends = np.r_[starts[1:], len(df)]
            for a, b in zip(starts, ends, strict=True):
                self._index[str(pairs[a])] = (int(a), int(b), ts[a:b])
        return True

    def read_asof(self, ts: Any, n: int, pairs: Any = None) -> pd.DataFrame:
        from bqx.calendar import to_utc
        from bqx.universe import normalize_pairs

        t = to_utc(ts)
        if self.frame is None or self._end is None or n != self.n or t > self._end:
            self.fallbacks += 1
            return self.store.read_asof(ts, n, pairs)
        tv = t.value
        take: list[np.ndarray] = []
        for p in sorted(normalize_pairs(pairs)):
            if p not in self._present:
                continue
            got = self._index.get(p)
            hi = int(np.searchsorted(got[2], tv, side="right")) if got else 0
            # fewer than n bars at or before t in the window: all there are only when the
            # window starts before the pair's first bar (the start of its history)
            lo = self._lo.value if self._lo is not None else None
            if hi < n and (lo is None or self._first.get(p, lo) <= lo):
                self.fallbacks += 1
                return self.store.read_asof(ts, n, pairs)
            if got is not None and hi:
                take.append(np.arange(got[0] + max(0, hi - n), got[0] + hi))
        if not take:
            return self.frame.iloc[:0].reset_index(drop=True)
        return self.frame.iloc[np.concatenate(take)].reset_index(drop=True)


def _time_chunks(rows: list[dict[str, Any]], span: pd.Timedelta) -> list[list[dict[str, Any]]]:
    """``rows`` sorted by as-of time, cut so each chunk spans at most ``span``."""
    rows = sorted(rows, key=lambda d: pd.Timestamp(d["asof_ts"]))
    out: list[list[dict[str, Any]]] = []
    for d in rows:
        t = pd.Timestamp(d["asof_ts"])
        if out and t - pd.Timestamp(out[-1][0]["asof_ts"]) <= span:
            out[-1].append(d)
        else:
            out.append([d])
    return out


class ForensicsWorker:
    """Explains pending decisions (the decision log is the outbox). Models are cached by
    (pair, version); features are recomputed with the serving code from bars read once per
    batch (:class:`BatchBars`: one store connection per batch, not one per decision)."""

    #: longest stretch of as-of times whose bars are read in one window
    WINDOW_SPAN = pd.Timedelta(days=1)

    def __init__(self, settings: Any, state: Any = None, service: Any = None) -> None:
        from bqx.serving.service import PredictionService

        self.settings = settings
        if service is None:
            service = PredictionService(settings, live=False, log_decisions=False)
            service._store = BatchBars(service.store, service.store_rows)
        self.service = service
        self.bars: BatchBars | None = (
            service._store if isinstance(service._store, BatchBars) else None
        )
        self.state = state or self.service.state
        self._models: dict[tuple[str, str], Any] = {}

    def model(self, pair: str, version: str) -> Any:
        key = (pair, version)
        if key not in self._models:
            self._models[key] = self.service.registry.load(pair, version=version)
        return self._models[key]

    def explain_decision(self, d: dict[str, Any]) -> dict[str, Any]:
        art = self.model(d["pair"], str(d["model_version"]))
        # a request for time T sees the bars that CLOSED by T: ask for the as-of bar's close
        asof = pd.Timestamp(d["asof_ts"])
        t = asof + pd.Timedelta(self.settings.interval)
        # serving computes only the columns the version reads (hash of that vector); a
        # decision answered with every column (e.g. during a rollout) hashes the full one
        fv = self.service.features(d["pair"], t, only=getattr(art, "needed_columns", None))
        logged = d.get("feature_hash")
        if logged and fv.hash != logged:
            full = self.service.features(d["pair"], t)
            if full.hash == logged:
                fv = full
            elif self.bars is not None and self.bars.frame is not None:
                # the window may predate a late bar or a correction: ask the store itself
                self.bars.invalidate()
                self.service._store_snaps.clear()
                return self.explain_decision(d)
        if fv.asof != asof:
            raise ForensicsError(f"the {d['pair']} bar at {asof.isoformat()} is not in the store")
        return explain(art, fv.values, decision=d, feature_hash=fv.hash)

    def run_once(self, batch: int = 200, max_cpu_share: float = 1.0) -> dict[str, Any]:
        """Explain everything pending now (in batches); returns counts and the rate.

        ``max_cpu_share`` < 1: after each explanation, sleep so that the process's CPU
        time (all its threads) stays at most that share of the wall time (a throttle for a worker sharing
        cores with the API; 1 = flat out, as ``bqx forensics run`` does)."""
        t0 = time.perf_counter()
        done = failed = 0
        slept = 0.0
        while True:
            rows = self.state.pending_forensics(batch)
            if not rows:
                break
            for chunk in _time_chunks(rows, self.WINDOW_SPAN):
                if self.bars is not None:  # the chunk's bars: one store read at most
                    step = pd.Timedelta(self.settings.interval)
                    if self.bars.load(
                        pd.Timestamp(chunk[0]["asof_ts"]) + step,
                        pd.Timestamp(chunk[-1]["asof_ts"]) + step,
                    ):
                        self.service._store_snaps.clear()
                done, failed, slept = self._explain_all(chunk, max_cpu_share, done, failed, slept)
        sec = time.perf_counter() - t0
        return {
            "explained": done,
            "failed": failed,
            "seconds": sec,
            "throttle_sleep_seconds": slept,
            "per_second": done / sec if sec > 0 and done else None,
        }

    def _explain_all(
        self,
        rows: list[dict[str, Any]],
        max_cpu_share: float,
        done: int,
        failed: int,
        slept: float,
    ) -> tuple[int, int, float]:
        for d in rows:
            c0 = time.process_time()
            try:
                rec = self.explain_decision(d)
                self.state.save_forensics(d["decision_id"], rec)
                done += 1
            except BqxError as e:  # e.g. bars or model version gone: record, move on
                self.state.save_forensics(d["decision_id"], None, error=str(e))
                failed += 1
            if max_cpu_share < 1.0:
                busy = time.process_time() - c0
                pause = busy * (1.0 - max_cpu_share) / max_cpu_share
                time.sleep(pause)
                slept += pause
        return done, failed, slept

    def follow(self, poll_s: float = 1.0, stop: Any = None, max_cpu_share: float = 1.0) -> None:
        """Run until ``stop`` (a threading.Event) is set, polling the outbox."""
        while stop is None or not stop.is_set():
            res = self.run_once(max_cpu_share=max_cpu_share)
            if not res["explained"] and not res["failed"]:
                if stop is not None:
                    stop.wait(poll_s)
                else:
                    time.sleep(poll_s)
