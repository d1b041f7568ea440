"""The prediction logic as plain Python: one implementation for the API, ``bqx predict`` and
(through shared helpers) ``bqx predict-batch``, so all three agree on the same bar.

A prediction for ``(pair, timestamp)``:

1. **Bars**: the as-of bar is the pair's last bar whose *close* (open time + one bar
   interval) is at or before ``timestamp``, so a historical request sees no information
   after it (default, live: the newest bar in the store). The answer's ``available_at`` is
   that close. The service reads them from its in-memory :class:`BarCache`
   when it has one (the API) and from the store otherwise (the CLI, or a timestamp older
   than the cache window); both give the same Panel rows, hence the same features.
2. **Staleness**: if the pair's last *real* (not forward-filled) bar is more than
   ``serve.stale_tolerance_min`` before the requested time (default: before the newest bar
   of any pair) the request is refused with :class:`StaleDataError` (HTTP 409) rather than
   answered from old data. ``serve.wallclock_stale_min`` > 0 also compares with the clock.
3. **Features**: :func:`bqx.features.pipeline.at_row` (``at_array`` at the as-of row found
   in step 1) on the Panel, only the columns the production model reads (~0.15 ms for a
   70-feature version, compiled kernels), cached per (bar-cache generation, pair, as-of
   row, columns) because many clients ask about the same bar.
4. **Model**: the ``production`` artifact from the :class:`ModelCache`;
   ``predict_vector`` (the fast one-row path) and the split-conformal interval.
5. **Signal**: :func:`bqx.signals.decide` at the as-of bar (no-trade zones force HOLD).
6. **Decision log**: every prediction is appended (asynchronously in the server).

Public API::

    svc = PredictionService(settings)          # live=True: bar cache + async decision log
    svc.start()                                # load bars, prewarm models
    svc.predict("EURUSD", timestamp=None, key_id=None) -> Prediction
    svc.predict_many([{"pair": ..., "timestamp": ...}, ...]) -> list[Prediction | BqxError]
    svc.features("EURUSD", timestamp=None) -> FeatureVector
    svc.push_bars(frame) -> dict               # validate, upsert, update the cache
    svc.maintain()                             # background tick: refresh bars and aliases
    svc.ready() -> dict                        # store / registry / production model checks
    svc.close()
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import TimestampRangeError, to_utc
from bqx.config import Settings, load_settings
from bqx.data.bars import normalize_bars
from bqx.decision.regime import RegimeTracker
from bqx.deps import LazyDeps
from bqx.errors import (
    BqxError,
    DataValidationError,
    ModelNotFoundError,
    NoDataError,
    StaleDataError,
)
from bqx.features import columns, feature_set_version
from bqx.features.pipeline import at_row
from bqx.serving.cache import BarCache, ModelCache, PanelSnapshot, make_snapshot, window_rows
from bqx.signals import Signal, decide, volatility_ratio
from bqx.training.validity import REASON as INSUFFICIENT
from bqx.training.validity import missing_features, raise_insufficient
from bqx.universe import PAIRS, normalize_pair

log = logging.getLogger(__name__)

#: Entries of the per-bar feature and prediction caches (~6.5 kB per feature vector).
FEATURE_CACHE_SIZE = 2048


class InvalidInputError(BqxError, ValueError):
    """A request field has the right type but an unusable value (e.g. a malformed time)."""


class NoProductionModelError(ModelNotFoundError):
    """The pair has no version with the ``production`` alias."""


#: the last (timestamp, parsed) of :func:`parse_timestamp`: one request parses its time in
#: ``needs_io`` and again in ``predict`` (a tuple, replaced whole: safe across threads)
_LAST_PARSED: tuple[Any, pd.Timestamp] | None = None


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """``None`` or anything :func:`bqx.calendar.to_utc` accepts -> tz-aware UTC (naive = UTC)."""
    global _LAST_PARSED
    if value is None:
        return None
    kind: type | None = type(value)
    if kind is str:
        if not value.strip():
            return None
    elif kind is not datetime or value.utcoffset() is None:
        kind = None  # remembered: strings and aware datetimes (equal ones: the same instant)
    last = _LAST_PARSED
    if kind is not None and last is not None and type(last[0]) is kind and last[0] == value:
        return last[1]
    if isinstance(value, str) and not value.strip():
        return None
    try:
        t = to_utc(value)
    except (ValueError, TypeError, OverflowError) as e:
        why = f" ({e})" if isinstance(e, TimestampRangeError) else ""
        raise InvalidInputError(
            f"timestamp {value!r} is not a valid time{why}",
            hint="use ISO 8601 UTC, e.g. 2024-01-15T10:00:00Z, or omit it for the newest bar",
        ) from e
    if kind is not None:
        _LAST_PARSED = (value, t)
    return t


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _utc_us(t: pd.Timestamp) -> datetime | None:
    """The ``datetime`` of a UTC time on a whole microsecond (what ``t.to_pydatetime()``
    returns, without pandas' per-call overhead), else None."""
    if t.tzinfo is UTC:
        v = t.value
        if v % 1000 == 0:
            return _EPOCH + (v // 1000) * _US
    return None


def _iso(t: pd.Timestamp) -> str:
    """``t.isoformat()``: through ``datetime`` where :func:`_utc_us` applies (the same text -
    pandas formats the ``datetime`` part with it and appends only nanoseconds - in ~1 us
    instead of ~5-10 us); anything else through pandas."""
    d = _utc_us(t)
    return t.isoformat() if d is None else d.isoformat()


def _pydatetime(t: pd.Timestamp) -> datetime:
    """``t.to_pydatetime()`` (the same ``datetime``)."""
    d = _utc_us(t)
    return t.to_pydatetime() if d is None else d


def feature_hash(values: np.ndarray) -> str:
    """Short fingerprint of a feature vector (forensics: which inputs produced a decision)."""
    return hashlib.blake2b(
        np.ascontiguousarray(values, dtype=np.float64).tobytes(), digest_size=16
    ).hexdigest()


def _needed_columns(svc: Any, pair: str) -> tuple[str, ...] | None:
    """The columns the production model of ``pair`` reads (None: compute all, and let the
    caller raise the model's error after the data checks, in the usual order; also None
    while a rollout or experiment routes the pair: another model may answer)."""
    router = getattr(svc, "router", None)
    if router is not None and router.select(pair, None) is not None:
        return None
    try:
        return svc.model(pair).needed_columns
    except BqxError:
        return None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class FeatureVector:
    """All candidate features of one pair at one bar, with where they came from."""

    pair: str
    asof: pd.Timestamp
    values: np.ndarray  # columns() order, read-only
    hash: str
    last_observed: pd.Timestamp
    vol_ratio: float | None
    cache_hit: bool
    source: str  # "cache" (in-memory bars) or "store"
    key: tuple[Any, ...] | None  # (generation, pair, row[, columns]) when cacheable

    def as_dict(self, with_values: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "pair": self.pair,
            "timestamp": self.asof.isoformat(),
            "last_observed_bar": self.last_observed.isoformat(),
            "feature_set_version": feature_set_version(),
            "n_features": len(self.values),
            "nan_features": int(np.isnan(self.values).sum()),
            "feature_hash": self.hash,
            "cache_hit": self.cache_hit,
            "source": self.source,
        }
        if with_values:
            d["features"] = {
                c: _finite(float(v)) for c, v in zip(columns(), self.values, strict=True)
            }
        return d


@dataclass(frozen=True)
class Prediction:
    """One served decision (what the API returns and the decision log stores)."""

    decision_id: str
    pair: str
    timestamp: pd.Timestamp  # the as-of bar
    requested_timestamp: pd.Timestamp | None
    horizon_minutes: float
    prediction: float
    interval: tuple[float, float]
    confidence_level: float
    signal: str
    signal_strength: float
    signal_reason: str
    threshold: float
    features_used: int
    model: str
    model_version: str
    feature_hash: str
    feature_cache_hit: bool
    latency_ms: float
    #: which arm answered: "production" (no rollout), "candidate", or "a"/"b" (experiment)
    arm: str | None = None
    rollout_id: int | None = None
    available_at: pd.Timestamp | None = None  # the as-of bar's close: when it was known
    regime: dict[str, Any] | None = None  # bqx.decision.regime: filtered HMM posterior
    #: selected features that were NaN when the forecast was refused (insufficient_data)
    missing_features: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become None): the API response body."""
        extra = (
            {} if self.missing_features is None else {"missing_features": [*self.missing_features]}
        )
        return {
            **extra,
            "decision_id": self.decision_id,
            "pair": self.pair,
            "timestamp": _iso(self.timestamp),
            "requested_timestamp": (
                _iso(self.requested_timestamp) if self.requested_timestamp else None
            ),
            "available_at": _iso(self.available_at) if self.available_at else None,
            "horizon_minutes": self.horizon_minutes,
            "prediction": _finite(self.prediction),
            "confidence_interval": [_finite(self.interval[0]), _finite(self.interval[1])],
            "confidence_level": self.confidence_level,
            "signal": self.signal,
            "signal_strength": self.signal_strength,
            "signal_reason": self.signal_reason,
            "threshold": self.threshold,
            "features_used": self.features_used,
            "model": self.model,
            "model_version": self.model_version,
            "feature_hash": self.feature_hash,
            "feature_cache_hit": self.feature_cache_hit,
            "latency_ms": round(self.latency_ms, 3),
            "arm": self.arm or "production",
            "regime": self.regime,
        }


@dataclass(frozen=True)
class _Core:
    prediction: float
    lo: float
    hi: float
    signal: Signal
    missing: tuple[str, ...] | None = None


class _LRU:
    """A tiny thread-safe LRU (dict + order); values are immutable."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def vol_ratio_at(snapshot: PanelSnapshot, col: int, row: int) -> float | None:
    """:func:`bqx.signals.volatility_ratio` of the pair's closes at ``row`` (same numbers as
    the batch path, computed from just the bars the definition needs)."""
    from bqx.serving.cache import VOL_RATIO_BARS

    c = snapshot.panel.close[max(0, row - VOL_RATIO_BARS + 1) : row + 1, col]
    if len(c) < 61:
        return None
    v = float(volatility_ratio(c)[-1])
    return v if math.isfinite(v) else None


class PredictionService(LazyDeps):
    """Features -> model -> interval -> signal -> decision log, for one process.

    ``live=True`` (the API): an in-memory :class:`BarCache` (call :meth:`start`), the
    background :class:`~bqx.state.DecisionLogWriter`, and the registry alias refresh in
    :meth:`maintain`. ``live=False`` (``bqx predict``): bars are read from the store for each
    call and decisions are logged synchronously.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        live: bool = True,
        store: Any = None,
        registry: Any = None,
        state: Any = None,
        metrics: Any = None,
        log_decisions: bool = True,
    ) -> None:
        self.settings = s = settings or load_settings()
        self.live = live
        self.metrics = metrics
        self.log_decisions = log_decisions
        self._store = store
        self._registry = registry
        self._state = state
        vs = s.signals.vol_scaling
        self.rows = window_rows(s.max_ffill_bars, vs)
        #: bars per pair read from the store for one as-of time (no hot window needed)
        self.store_rows = window_rows(s.max_ffill_bars, vs, hot=0)
        self._interval = pd.Timedelta(s.interval)  # parsed once, not per prediction
        self._last_closed: tuple[pd.Timestamp, pd.Timestamp] | None = None
        self.interval_minutes = self._interval.total_seconds() / 60.0
        self.models = ModelCache(
            self.registry, s.serve.cache_size, alias_ttl_s=s.serve.alias_ttl_s, metrics=metrics
        )
        self.bars: BarCache | None = (
            BarCache(
                self.store,
                interval=s.interval,
                max_ffill=s.max_ffill_bars,
                rows=self.rows,
                vol_scaling=vs,
            )
            if live
            else None
        )
        self._features = _LRU(FEATURE_CACHE_SIZE)
        self._cores = _LRU(FEATURE_CACHE_SIZE)
        self._store_snaps = _LRU(4)
        self._writer: Any = None
        self._capture: Any = None  # bqx.monitoring.capture.ServiceCapture (drift inputs)
        self._alias_checked = time.monotonic()
        self._ready_cache: tuple[float, dict[str, Any]] | None = None
        self._generation_seen = -1
        self.router: Any = None
        if live:
            from bqx.rollout.routing import Router

            self.router = Router(s, lambda: self.state, lambda: self.registry,
                                 on_ended=self._reload_pairs)  # fmt: skip
        self.regime = RegimeTracker(s.regime, lambda: self.state)
        #: the last bar-cache load/refresh error (None after a success)
        self._bars_failure: BaseException | None = None
        self.insufficient: dict[str, str] = {}  # pair -> as-of of its last refused forecast

    # -- lazily built dependencies (store, registry, state: bqx.deps.LazyDeps) -------------
    def _state_options(self) -> dict[str, Any]:
        # a server may start before its database: tables are created on first use
        return {"tolerate_unreachable": self.live}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *, prewarm: bool = True) -> dict[str, Any]:
        """Load the bar window and pre-warm models (blocking; run it at startup)."""
        out: dict[str, Any] = {}
        if self.bars is not None:
            t0 = time.perf_counter()
            try:
                self.bars.load()
            except Exception as e:  # an empty or busy store must not stop the server
                log.warning("bar cache: initial load failed (%s); will retry", e)
                self._bars_failure = e
            out["bars_seconds"] = time.perf_counter() - t0
        if self.live and self.log_decisions:
            from bqx.serving.resilience import make_decision_writer

            # buffers, spills to disk and replays across state-database outages
            self._writer = make_decision_writer(self)
            if self.settings.monitor.capture_rate > 0:
                from bqx.monitoring.capture import ServiceCapture

                self._capture = ServiceCapture(self.state, self.settings)
        if prewarm and self.settings.serve.prewarm:
            pairs = self.settings.serve.prewarm
            try:
                if [p.lower() for p in pairs] == ["all"]:
                    pairs = [p for p in PAIRS if self.registry.production_version(p) is not None]
                out["prewarm"] = self.models.prewarm(pairs)
            except BqxError as e:  # registry down at start: models load on first use
                log.warning("prewarm skipped: %s", e)
                out["prewarm"] = f"skipped: {e.message}"
        if prewarm and self.live:
            # the feature kernels compiled (or loaded from numba's cache) now, not by the
            # first requests: a compile holds the GIL for seconds
            from bqx.features.pipeline import warm_up
            from bqx.training import fastpredict

            try:
                out["features_warm_seconds"] = round(warm_up(), 3)
                fastpredict.warm_up()
            except Exception as e:  # never stop a server: the kernels compile on first use
                log.warning("feature warm-up failed: %s", e)
        return out

    def close(self) -> None:
        """Flush the decision log and release the store."""
        if self.router is not None:
            self.router.close()
        if self._writer is not None:
            self._writer.close()
        if self._capture is not None:
            self._capture.close()
        if self._store is not None:
            self._store.close()

    def _reload_pairs(self, pairs: list[str]) -> None:
        """A rollout ended: load the (possibly moved) production alias now."""
        for p in pairs:
            self.models.reload(p)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every decision submitted so far is written."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def maintain(self) -> dict[str, Any]:
        """One background tick: refresh the bar cache and the alias checks when due.

        Blocking (store and registry I/O); the API runs it in a thread every ~0.25 s.
        """
        s = self.settings.serve
        out: dict[str, Any] = {}
        now = time.monotonic()
        # rollouts first: a cheap state-DB read (the candidate's artifact is loaded here,
        # off the request path), so a bar refresh (0.2-0.9 s on a loaded machine) does not
        # delay following a rollout change
        if self.router is not None:
            try:
                out["rollouts_changed"] = self.router.maybe_refresh()
            except Exception as e:  # state DB down: keep routing as it was, retry next tick
                log.warning("rollouts: refresh failed (%s); routing unchanged", e)
                out["rollouts_error"] = str(e)
        if self.bars is not None and now - self.bars.refreshed_at >= s.bars_refresh_s:
            try:
                out["bars_changed"] = self.bars.refresh()
                self._bars_failure = None
            except Exception as e:
                log.warning("bar cache: refresh failed: %s", e)
                out["bars_error"] = str(e)
                self._bars_failure = e
        if now - self._alias_checked >= s.alias_ttl_s / 2:
            self._alias_checked = now
            out["models_changed"] = self.models.refresh_aliases()
        if self._writer is not None:
            from bqx.serving.resilience import update_metrics

            update_metrics(self)
        snap = self.bars.snapshot if self.bars is not None else None
        if snap is not None and snap.generation != self._generation_seen:
            self._generation_seen = snap.generation
            self._features.clear()
            self._cores.clear()
        return out

    # -- bars ------------------------------------------------------------------------------
    def _store_snapshot(self, req: pd.Timestamp | None) -> PanelSnapshot:
        """A Panel of the ``rows`` bars per pair ending at ``req`` (default: newest) read
        from the store: the CLI path, and the API's path for timestamps older than its cache."""
        store = self.store
        if req is None:
            latest = store.latest()
            if not latest:
                raise NoDataError(
                    "the bar store has no bars",
                    hint="ingest bars (`bqx data ingest` / `bqx data generate`) or POST /v1/bars",
                )
            t = max(latest.values())
        else:
            t = req
        live = self.bars.snapshot if self.bars is not None else None
        key = (t.floor(self._interval).value, live and live.generation)
        snap = self._store_snaps.get(key)
        if snap is not None:
            return snap
        df = store.read_asof(t, self.store_rows)
        if not len(df):
            raise NoDataError(
                f"no bars at or before {t.isoformat()} in the store",
                hint="ask for a later timestamp or ingest older history",
            )
        snap = make_snapshot(
            df,
            interval=self.settings.interval,
            max_ffill=self.settings.max_ffill_bars,
            complete=True,
            vol_scaling=self.settings.signals.vol_scaling,
        )
        self._store_snaps.put(key, snap)
        return snap

    def _snapshot_for(self, req: pd.Timestamp | None) -> tuple[PanelSnapshot, bool]:
        if self.bars is None:
            return self._store_snapshot(req), False
        live = self.bars.snapshot
        if live is None and self._bars_failure is not None:
            from bqx.errors import StoreError  # an outage, not missing data: 503, not 404

            raise StoreError(f"no bars cached and the store failed: {self._bars_failure}")
        if live is None:
            raise NoDataError(
                "the service has no bars yet",
                hint="ingest bars or push them with POST /v1/bars; the cache refreshes every "
                f"{self.settings.serve.bars_refresh_s:g} s",
            )
        if live.covers(req):
            return live, True
        if live.first_full_row == 0 and req is not None and req < live.first_ts:
            raise NoDataError(
                f"no bars at or before {req.isoformat()}",
                hint=f"the first stored bar is at {live.first_ts.isoformat()}",
            )
        return self._store_snapshot(req), False

    def _closed_by(self, t: pd.Timestamp | None) -> pd.Timestamp | None:
        """The latest bar *open* time whose bar has closed by ``t`` (bars are stamped with
        their open): ``t`` minus one interval. None (live: the newest bar) stays None."""
        if t is None:
            return None
        # the API asks needs_io() and then predict() with the same parsed object
        last = self._last_closed
        if last is not None and last[0] is t:
            return last[1]
        out = t - self._interval
        self._last_closed = (t, out)
        return out

    def needs_io(self, pair: str, timestamp: Any = None) -> bool:
        """True when :meth:`predict` would block on the registry or the store (model not
        cached, or a timestamp older than the in-memory window): the API then runs it in a
        worker thread instead of on the event loop."""
        try:
            p = normalize_pair(pair)
            req = self._closed_by(parse_timestamp(timestamp))
        except BqxError:
            return False
        if not self.models.cached(p):
            return True
        snap = self.bars.snapshot if self.bars is not None else None
        return snap is None or not snap.covers(req)

    # -- features --------------------------------------------------------------------------
    def features(
        self, pair: str, timestamp: Any = None, only: tuple[str, ...] | None = None
    ) -> FeatureVector:
        """Candidate features of ``pair`` at its last bar at or before ``timestamp``.

        Raises :class:`~bqx.errors.UnknownPairError`, :class:`InvalidInputError`,
        :class:`~bqx.errors.NoDataError` or :class:`~bqx.errors.StaleDataError`.
        """
        pair = normalize_pair(pair)
        asked = parse_timestamp(timestamp)
        req = self._closed_by(asked)
        snap, from_cache = self._snapshot_for(req)
        panel = snap.panel
        if pair not in panel.pairs:
            raise NoDataError(
                f"no {pair} bars in the store",
                hint=f"ingest {pair} bars or push them with POST /v1/bars",
            )
        j = panel.pairs.index(pair)
        t = req if req is not None else snap.last_ts
        try:
            p = panel.row_at_or_before(t, pair)
        except NoDataError:
            raise NoDataError(
                f"no {pair} bar closed by {asked.isoformat() if asked else t.isoformat()}",
                hint="ask for a later timestamp (or omit it for the newest bar)",
            ) from None
        asof = pd.Timestamp(int(panel.ts[p]), tz="UTC")
        r = int(snap.last_obs[p, j])  # the pair's last real bar (p itself unless filled)
        if r < 0:  # pragma: no cover - a finite close implies an observed bar
            raise NoDataError(f"no {pair} bar at or before {t.isoformat()}")
        last_obs = asof if r == p else pd.Timestamp(int(panel.ts[r]), tz="UTC")
        self._check_stale(pair, asked, t, last_obs)
        key: Any = (snap.generation, pair, p) if from_cache else None
        if key is not None:
            hit = self._features.get(key) or (only and self._features.get((*key, only)))
            if hit:
                return replace(hit, cache_hit=True)
            key = (*key, only) if only else key
        t0 = time.perf_counter()
        # at_array(panel, pair, asof, only=only) at the row found above (only: what the
        # model reads)
        values = at_row(panel, pair, p, only)
        values.flags.writeable = False
        vr = vol_ratio_at(snap, j, p) if self.settings.signals.vol_scaling else None
        fv = FeatureVector(
            pair=pair,
            asof=asof,
            values=values,
            hash=feature_hash(values),
            last_observed=last_obs,
            vol_ratio=vr,
            cache_hit=False,
            source="cache" if from_cache else "store",
            key=key,
        )
        if self.metrics is not None:
            self.metrics.feature_seconds.observe(time.perf_counter() - t0)
        if key is not None:
            self._features.put(key, fv)
        return fv

    def _check_stale(
        self, pair: str, req: pd.Timestamp | None, ref: pd.Timestamp, last_obs: pd.Timestamp
    ) -> None:
        s = self.settings.serve
        age = (ref.value - last_obs.value) / 60e9  # minutes (ints: no Timedelta per request)
        if age > s.stale_tolerance_min:
            what = (
                f"the requested time {req.isoformat()}"
                if req is not None
                else (f"the newest bar in the store ({ref.isoformat()})")
            )
            raise StaleDataError(
                f"stale data: the last {pair} bar is {last_obs.isoformat()}, {age:.1f} min "
                f"before {what} (tolerance {s.stale_tolerance_min:g} min)",
                hint="push recent bars (POST /v1/bars), ask for an earlier timestamp, or raise "
                "serve.stale_tolerance_min",
            )
        if req is None and s.wallclock_stale_min > 0:
            now = pd.Timestamp.now(tz="UTC")
            age_now = (now - last_obs).total_seconds() / 60.0
            if age_now > s.wallclock_stale_min:
                raise StaleDataError(
                    f"stale data: the last {pair} bar is {last_obs.isoformat()}, {age_now:.1f} "
                    f"min before now (tolerance serve.wallclock_stale_min = "
                    f"{s.wallclock_stale_min:g} min)",
                    hint="check the live bar feed (POST /v1/bars), or pass an explicit timestamp",
                )

    # -- prediction ------------------------------------------------------------------------
    def model(self, pair: str) -> Any:
        """The production artifact of ``pair`` (from the LRU cache; loads on a miss)."""
        try:
            return self.models.get(pair)
        except ModelNotFoundError:
            raise NoProductionModelError(
                f"no production model for {pair}",
                hint=f"train and promote one (`bqx train --pairs {pair} --promote`) or promote "
                f"an approved version (POST /v1/models/{pair}/promote)",
            ) from None

    def horizon_minutes(self, horizon_bars: int) -> float:
        return float(horizon_bars * self.interval_minutes)

    def predict(
        self,
        pair: str,
        timestamp: Any = None,
        *,
        key_id: str | None = None,
        request_time: datetime | None = None,
        started: float | None = None,
        log: bool = True,
        source: str = "api",
        strict: bool = False,
    ) -> Prediction:
        """One decision for ``pair`` at its last bar at or before ``timestamp``.

        ``started`` (``time.perf_counter()``) lets the API include its own overhead in
        ``latency_ms``. Errors are :class:`~bqx.errors.BqxError` subclasses that say what
        to fix (unknown pair, bad time, no data, stale data, no production model).
        """
        from bqx.state import new_decision_id

        t0 = started if started is not None else time.perf_counter()
        request_time = request_time or datetime.now(UTC)
        pair = normalize_pair(pair)
        req = parse_timestamp(timestamp)
        fv = self.features(pair, req, only=_needed_columns(self, pair))
        art = self.model(pair)
        sel = self.router.select(pair, key_id) if self.router is not None else None
        arm = None
        if sel is None:
            core = self._core(fv, art)
        else:  # a rollout or experiment: the router picks the arm (bqx.rollout.routing)
            core, art, arm = self.router.run(sel, fv, art, self._core)
        if core.missing is not None:
            self.insufficient[pair] = fv.asof.isoformat()
            if strict:
                raise_insufficient(pair, core.missing, len(art.features))
        else:
            self.insufficient.pop(pair, None)
        regime = self.regime.for_prediction(self, fv, art)
        pred = Prediction(
            decision_id=new_decision_id(),
            pair=pair,
            timestamp=fv.asof,
            requested_timestamp=req,
            horizon_minutes=self.horizon_minutes(art.horizon),
            prediction=core.prediction,
            interval=(core.lo, core.hi),
            confidence_level=float(art.conformal.level),
            signal=core.signal.signal,
            signal_strength=self.regime.scale(core.signal.strength, regime),
            signal_reason=core.signal.reason,
            threshold=core.signal.threshold,
            features_used=len(art.features),
            model=art.model,
            model_version=str(art.version),
            feature_hash=fv.hash,
            feature_cache_hit=fv.cache_hit,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            arm=arm,
            rollout_id=sel.route.rollout_id if sel is not None else None,
            regime=regime,
            available_at=fv.asof + self._interval,
            missing_features=core.missing,
        )
        if log and self.log_decisions:
            self._log(pred, key_id=key_id, request_time=request_time, source=source)
            if self._capture is not None:  # model inputs for drift, off the request path
                self._capture.submit(pred.decision_id, pair, fv.asof, fv.values, art)
            if sel is not None:
                self.router.shadow(sel, pred, fv, self._core, lambda p: self._log(
                    p, key_id=key_id, request_time=request_time, source="shadow"))  # fmt: skip
        if self.metrics is not None:
            self.metrics.observe_prediction(pair, pred.signal)
        return pred

    def _core(self, fv: FeatureVector, art: Any) -> _Core:
        key = (*fv.key, art.version, id(art)) if fv.key is not None else None
        if key is not None:
            hit = self._cores.get(key)
            if hit is not None:
                return hit
        missing = missing_features(art, fv.values, self.settings.serve.min_valid_features)
        yhat = float(art.predict_vector(fv.values)) if missing is None else float("nan")
        if math.isfinite(yhat):
            lo, hi = art.interval(yhat, fv.values)
        else:
            lo = hi = float("nan")
        interval = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
        sig = decide(
            yhat,
            pair=fv.pair,
            ts=fv.asof,
            interval=interval,
            vol_ratio=fv.vol_ratio,
            stale=False,
            settings=self.settings.signals,
        )
        if missing is not None:
            sig = Signal("HOLD", 0.0, INSUFFICIENT, sig.threshold)
        core = _Core(yhat, float(lo), float(hi), sig, None if missing is None else (*missing,))
        if key is not None:
            self._cores.put(key, core)
        return core

    def _log(
        self, pred: Prediction, *, key_id: str | None, request_time: datetime, source: str
    ) -> None:
        row = self.decision_row(pred, key_id=key_id, request_time=request_time, source=source)
        if self._writer is not None:
            self._writer.submit(row)
        else:
            self.state.log_decisions([row])

    def decision_row(
        self, pred: Prediction, *, key_id: str | None, request_time: datetime, source: str
    ) -> dict[str, Any]:
        """The decision-log row of ``pred`` (paper trading logs the same rows itself)."""
        from bqx.registry import model_name

        return {
            "decision_id": pred.decision_id,
            "request_time": request_time,
            "pair": pred.pair,
            "asof_ts": _pydatetime(pred.timestamp),
            "horizon": round(pred.horizon_minutes / self.interval_minutes),
            "prediction": _finite(pred.prediction),
            "interval_lo": _finite(pred.interval[0]),
            "interval_hi": _finite(pred.interval[1]),
            "confidence_level": pred.confidence_level,
            "signal": pred.signal,
            "signal_strength": pred.signal_strength,
            "signal_reason": pred.signal_reason,
            "model_name": model_name(pred.pair),
            "model_version": pred.model_version,
            "latency_ms": pred.latency_ms,
            "feature_hash": pred.feature_hash,
            "key_id": key_id,
            "extra": {
                "source": source,
                "model": pred.model,
                **({"missing_features": [*pred.missing_features]} if pred.missing_features else {}),
                "requested_ts": (
                    _iso(pred.requested_timestamp) if pred.requested_timestamp else None
                ),
                "arm": pred.arm or "production",
                "rollout_id": pred.rollout_id,
                "regime": pred.regime,
            },
        }

    def predict_many(
        self, items: list[dict[str, Any]], *, key_id: str | None = None, source: str = "api"
    ) -> list[Prediction | BqxError]:
        """Several predictions; a failing item yields its error, the others still run."""
        out: list[Prediction | BqxError] = []
        for it in items:
            try:
                out.append(
                    self.predict(
                        it.get("pair", ""), it.get("timestamp"), key_id=key_id, source=source
                    )
                )
            except BqxError as e:
                out.append(e)
        return out

    # -- live bars -------------------------------------------------------------------------
    def push_bars(self, bars: pd.DataFrame) -> dict[str, Any]:
        """Validate bars exactly like ingestion, upsert them atomically, update the cache.

        Raises :class:`~bqx.errors.DataValidationError` (with the issues frame in
        ``report``) and writes nothing when any bar is bad.
        """
        from bqx.data.quality import summarize, validate_bars

        issues = validate_bars(bars, interval=self.settings.interval)
        if len(issues):
            raise DataValidationError(
                f"{len(issues)} problem(s) in {len(bars)} bars: "
                + ", ".join(f"{k} x{v}" for k, v in summarize(issues).items())
                + "; nothing was written",
                report=issues,
                hint="fix the listed rows (see 'issues') and send the batch again",
            )
        df = normalize_bars(bars)
        res = self.store.upsert(df)
        changed = self.bars.apply(df) if self.bars is not None else False
        if changed:
            self._features.clear()
            self._cores.clear()
        return {**res.as_dict(), "cache_updated": bool(changed)}

    # -- health ----------------------------------------------------------------------------
    def ready(self, max_age_s: float = 2.0) -> dict[str, Any]:
        """Store reachable, registry reachable, at least one production model (cached for
        ``max_age_s`` so a probe storm does not become a registry storm)."""
        now = time.monotonic()
        if self._ready_cache is not None and now - self._ready_cache[0] < max_age_s:
            return self._ready_cache[1]
        from bqx.serving.resilience import readiness_checks, update_metrics

        checks: dict[str, Any] = {}
        try:
            checks["store"] = bool(self.store.ping())
        except Exception:  # e.g. a DuckDB file locked by another process
            checks["store"] = False
        checks["registry"] = bool(self.registry.ping())
        n_models = len(self.models.pairs())
        if n_models == 0 and checks["registry"]:
            try:
                for p in PAIRS:
                    if self.registry.production_version(p) is not None:
                        n_models = 1
                        break
            except BqxError:
                checks["registry"] = False
        checks["production_model"] = n_models > 0
        more, more_ok = readiness_checks(self)  # state database, decision log
        checks.update(more)
        update_metrics(self, checks)
        snap = self.bars.snapshot if self.bars is not None else None
        checks["bars"] = snap is not None if self.bars is not None else None
        out = {
            "ready": bool(
                checks["store"] and checks["registry"] and checks["production_model"] and more_ok
            ),
            "checks": checks,
            "newest_bar": snap.last_ts.isoformat() if snap is not None else None,
            "models_cached": self.models.info(),
            "insufficient_data": dict(sorted(self.insufficient.items())),
        }
        self._ready_cache = (now, out)
        return out
