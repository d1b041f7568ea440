"""In-memory caches of the prediction service: recent bars (as a feature Panel) and models.

Why: the request path has a p99 budget of 20 ms and DuckDB costs ~15 ms just to open a
connection (and blocks while another process writes). So the service never reads the store
while answering: :class:`BarCache` keeps the last ``lookback() + max_ffill + margin`` bars
of **every** pair (cross-pair features need all 28) as a :class:`~bqx.features.Panel`,
refreshed from the store on a short interval in the background (new bars only), and
:class:`ModelCache` keeps the production artifacts of the most recently used pairs.

Both expose immutable snapshots swapped atomically, so readers (requests) take no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bqx.data.bars import BAR_COLUMNS, normalize_bars, ts_ns
from bqx.errors import ModelNotFoundError, RegistryUnavailableError
from bqx.features import Panel, lookback
from bqx.universe import normalize_pair

if TYPE_CHECKING:
    from bqx.data.store import BarStore
    from bqx.registry import Registry
    from bqx.serving.metrics import ServiceMetrics
    from bqx.training.artifact import ModelArtifact

log = logging.getLogger(__name__)

#: Extra bars kept beyond what the features strictly need (slack for gaps at the window start).
MARGIN_BARS = 64
#: How far back (bars) requests are answered from memory: one day of M1 bars. Older
#: timestamps read the store (slower, in a worker thread).
HOT_BARS = 1440
#: Bars re-read before the cache's newest bar on each refresh, to pick up late corrections.
REFRESH_OVERLAP_BARS = 10
#: :meth:`BarCache.refresh` skips the store read while the store's change token is the one
#: of its last read, but reads at least this often (seconds) whatever the token says.
REFRESH_FORCE_S = 30.0
#: Bars :func:`bqx.signals.volatility_ratio` needs (short + long + 1) with its defaults.
VOL_RATIO_BARS = 60 + 7200 + 1


def window_rows(max_ffill: int, vol_scaling: bool = False, hot: int = HOT_BARS) -> int:
    """Bars per pair the bar cache keeps: ``hot`` servable bars plus, before them, enough
    for every feature's lookback, the forward-fill policy at the window start and
    (optionally) the volatility ratio."""
    need = max(lookback(), VOL_RATIO_BARS if vol_scaling else 0)
    return need + max_ffill + MARGIN_BARS + hot


# =========================================================================================
# bars
# =========================================================================================
@dataclass(frozen=True)
class PanelSnapshot:
    """One immutable state of the bar cache. ``last_obs[r, j]`` is the last grid row at or
    before ``r`` where pair ``j`` had a real (not forward-filled) bar, -1 if none."""

    panel: Panel
    generation: int
    last_obs: np.ndarray
    #: the first row whose features have full history in this panel (0 when the panel
    #: holds the store's entire history, so nothing older exists anyway)
    first_full_row: int
    built_at: float

    @property
    def first_ts(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.panel.ts[0]), tz="UTC")

    @property
    def last_ts(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.panel.ts[-1]), tz="UTC")

    def covers(self, ts: pd.Timestamp | None) -> bool:
        """True when features at ``ts`` (default: newest) can be computed from this panel
        exactly as from the whole store history."""
        if ts is None:
            return True
        i = int(self.panel.ts.searchsorted(ts.value, "right")) - 1
        return i >= self.first_full_row


def make_snapshot(
    bars: pd.DataFrame,
    *,
    interval: timedelta,
    max_ffill: int,
    complete: bool,
    generation: int = 0,
    vol_scaling: bool = False,
) -> PanelSnapshot:
    """Build the Panel (and the last-observed index) from a long bar frame."""
    panel = Panel.from_bars(bars, interval=interval, max_ffill=max_ffill)
    n = len(panel)
    idx = np.where(panel.observed, np.arange(n)[:, None], -1)
    last_obs = np.maximum.accumulate(idx, axis=0)
    need = lookback() + max_ffill + 1
    if vol_scaling:
        need = max(need, VOL_RATIO_BARS)
    first_full = 0 if complete else min(n, need)
    return PanelSnapshot(panel, generation, last_obs, first_full, time.monotonic())


class BarCache:
    """The last ``rows`` bars of every pair, in memory, as a Panel snapshot.

    ``load()`` reads the window ending at the newest stored bar; ``refresh()`` reads only
    bars from ``REFRESH_OVERLAP_BARS`` before the newest cached bar on (one indexed range
    scan) and rebuilds the Panel only when something changed; ``apply(bars)`` merges bars
    just written by this process (``POST /v1/bars``) without a store read. Thread-safe:
    writers serialise on a lock, readers use :attr:`snapshot` (an atomic reference).
    """

    def __init__(
        self,
        store: BarStore,
        *,
        interval: timedelta,
        max_ffill: int,
        rows: int,
        vol_scaling: bool = False,
    ) -> None:
        self.store = store
        self.vol_scaling = vol_scaling
        self.interval = interval
        self.max_ffill = max_ffill
        self.rows = rows
        self._bars: pd.DataFrame | None = None
        self._complete = False
        self._snap: PanelSnapshot | None = None
        self._lock = threading.Lock()
        self.refreshed_at = 0.0
        self.rebuilds = 0
        #: the store's change token when the cache last read it, and when (monotonic)
        self._token: Any = None
        self._read_at = 0.0
        #: refreshes answered by the change token alone (no store read)
        self.skipped_reads = 0

    @property
    def snapshot(self) -> PanelSnapshot | None:
        return self._snap

    def _mark_read(self) -> None:
        # taken before the read: a write that lands during it changes the token again
        self._token = _change_token(self.store)
        self._read_at = time.monotonic()

    def load(self) -> bool:
        """(Re)load the whole window from the store; False when the store has no bars."""
        self._mark_read()
        latest = self.store.latest()
        with self._lock:
            self.refreshed_at = time.monotonic()
            if not latest:
                self._bars, self._snap = None, None
                return False
            newest = max(latest.values())
            df = self.store.read_asof(newest, self.rows)
            counts = df.groupby("pair").size() if len(df) else pd.Series(dtype=int)
            # fewer bars than the window for every pair: the cache holds all history
            self._complete = bool(len(counts) and int(counts.max()) < self.rows)
            self._install(df)
            return True

    def refresh(self) -> bool:
        """Pick up bars written by other processes; True when the snapshot changed.

        When the store can tell (a DuckDB file: :meth:`~bqx.data.store.BarStore.change_token`)
        and nothing was committed since the last read, nothing is read (a refresh a second
        opened the store each time: ~24 ms of CPU per second per worker), except at least
        every :data:`REFRESH_FORCE_S` seconds."""
        if self._bars is None:
            return self.load()
        tok = _change_token(self.store)
        if (
            tok is not None
            and tok == self._token
            and time.monotonic() - self._read_at < REFRESH_FORCE_S
        ):
            self.refreshed_at = time.monotonic()
            self.skipped_reads += 1
            return False
        self._mark_read()
        with self._lock:
            self.refreshed_at = time.monotonic()
            old = self._bars
            since = (
                pd.Timestamp(int(ts_ns(old["ts"]).max()), tz="UTC")
                - pd.Timedelta(self.interval) * REFRESH_OVERLAP_BARS
            )
        fresh = self.store.read(None, since, None)
        if not len(fresh):
            return False
        with self._lock:
            old = self._bars
            assert old is not None
            tail = old[ts_ns(old["ts"]) >= since.value].reset_index(drop=True)
            if _same(tail, fresh):
                return False
            self._install(_merge(old, fresh))
            return True

    def apply(self, bars: pd.DataFrame) -> bool:
        """Merge bars this process just wrote to the store (validated, canonical)."""
        if not len(bars):
            return False
        with self._lock:
            if self._bars is None:
                self._complete = True
                self._install(normalize_bars(bars))
                return True
            self._install(_merge(self._bars, normalize_bars(bars)))
            return True

    def _install(self, df: pd.DataFrame) -> None:
        df = df.reset_index(drop=True)
        counts = df.groupby("pair", sort=False)["ts"].transform("size")
        if len(df) and int(counts.max()) > self.rows:
            df = df.groupby("pair", sort=False).tail(self.rows).reset_index(drop=True)
            self._complete = False
        self._bars = df
        gen = (self._snap.generation + 1) if self._snap is not None else 1
        if not len(df):
            self._snap = None
            return
        self._snap = make_snapshot(
            df,
            interval=self.interval,
            max_ffill=self.max_ffill,
            complete=self._complete,
            generation=gen,
            vol_scaling=self.vol_scaling,
        )
        self.rebuilds += 1


def _change_token(store: Any) -> Any:
    """The store's change token; None (unknown: read) for a store without one, e.g. a paper
    replay's view whose content moves with its clock."""
    f = getattr(store, "change_token", None)
    return f() if f is not None else None


def _merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([old, new[list(BAR_COLUMNS)]], ignore_index=True)
    both = both.drop_duplicates(["pair", "ts"], keep="last")
    return both.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    a = a.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)
    b = b.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)
    if not (a["pair"].to_numpy() == b["pair"].to_numpy()).all():
        return False
    if not np.array_equal(ts_ns(a["ts"]), ts_ns(b["ts"])):
        return False
    for c in BAR_COLUMNS[2:]:
        x, y = a[c].to_numpy(dtype="float64"), b[c].to_numpy(dtype="float64")
        if not np.array_equal(x, y, equal_nan=True):
            return False
    return True


# =========================================================================================
# models
# =========================================================================================
@dataclass
class _Entry:
    artifact: ModelArtifact
    version: str
    loaded_at: float
    checked_at: float
    load_seconds: float


@dataclass
class ModelCacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    reloads: int = 0
    load_seconds: list[float] = field(default_factory=list)


class ModelCache:
    """LRU of production artifacts, one per pair, at most ``size``.

    A miss loads the ``production`` alias from the registry (blocking: callers on an event
    loop run :meth:`get` in a thread when :meth:`cached` is False). Promotions and rollbacks
    done elsewhere are picked up by :meth:`refresh_aliases` (the service calls it every
    ``alias_ttl_s / 2`` in the background) and, as a fallback, by :meth:`get` itself when an
    entry was last checked more than ``alias_ttl_s`` ago. :meth:`reload` applies an admin
    action at once.
    """

    def __init__(
        self,
        registry: Registry,
        size: int = 10,
        *,
        alias_ttl_s: float = 5.0,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.size = max(1, int(size))
        self.alias_ttl_s = alias_ttl_s
        self.metrics = metrics
        self.stats = ModelCacheStats()
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._pair_locks: dict[str, threading.Lock] = {}

    # -- queries ---------------------------------------------------------------------------
    def cached(self, pair: str) -> bool:
        """True when ``get(pair)`` will not touch the registry (loaded and recently checked)."""
        e = self._entries.get(pair)
        return e is not None and self._clock() - e.checked_at <= self.alias_ttl_s

    def pairs(self) -> list[str]:
        """Cached pairs, least recently used first."""
        with self._lock:
            return list(self._entries)

    def info(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._entries.items())
        now = self._clock()
        return [
            {
                "pair": p,
                "version": e.version,
                "model": e.artifact.model,
                "load_seconds": round(e.load_seconds, 4),
                "age_s": round(now - e.loaded_at, 1),
            }
            for p, e in items
        ]

    # -- access ----------------------------------------------------------------------------
    def get(self, pair: str) -> ModelArtifact:
        """The production artifact of ``pair`` (loaded on first use)."""
        e = self._entries.get(pair)
        if e is not None and self._clock() - e.checked_at <= self.alias_ttl_s:
            with self._lock:
                if pair in self._entries:
                    self._entries.move_to_end(pair)
            self.stats.hits += 1
            if self.metrics is not None:
                self.metrics.model_cache_hits.inc()
            return e.artifact
        if e is not None:  # stale alias check: the background refresher is not keeping up
            try:
                self._check(pair, e)
            except RegistryUnavailableError as exc:  # keep serving what we have
                log.warning("model cache: alias check of %s failed: %s", pair, exc)
                return e.artifact
            e2 = self._entries.get(pair)
            if e2 is not None:
                self.stats.hits += 1
                if self.metrics is not None:
                    self.metrics.model_cache_hits.inc()
                return e2.artifact
        return self._load(pair)

    def _lock_for(self, pair: str) -> threading.Lock:
        with self._lock:
            return self._pair_locks.setdefault(pair, threading.Lock())

    def _load(self, pair: str, expected: str | None = None) -> ModelArtifact:
        with self._lock_for(pair):
            e = self._entries.get(pair)
            if e is not None and (expected is None or e.version == expected):
                return e.artifact  # another thread loaded it meanwhile
            t0 = time.perf_counter()
            art = self.registry.load(pair)
            # compile the fast one-row predictor now, not on the first request
            art.predict_vector(np.zeros(len(art.all_columns)))
            dt = time.perf_counter() - t0
            self.stats.misses += 1
            self.stats.load_seconds.append(dt)
            if self.metrics is not None:
                self.metrics.model_cache_misses.inc()
                self.metrics.model_load_seconds.observe(dt)
            now = self._clock()
            entry = _Entry(art, str(art.version), now, now, dt)
            evicted: list[str] = []
            with self._lock:
                self._entries[pair] = entry
                self._entries.move_to_end(pair)
                while len(self._entries) > self.size:
                    old, _ = self._entries.popitem(last=False)
                    evicted.append(old)
            for old in evicted:
                self.stats.evictions += 1
                if self.metrics is not None:
                    self.metrics.model_cache_evictions.inc()
                log.info("model cache: evicted %s (size %d)", old, self.size)
            log.info("model cache: loaded %s v%s in %.3fs", pair, entry.version, dt)
            return art

    def _check(self, pair: str, e: _Entry) -> None:
        """Compare the cached version with the registry's alias; reload or drop on change."""
        current = self.registry.production_version(pair)
        if current == e.version:
            e.checked_at = self._clock()
            return
        if current is None:
            with self._lock:
                self._entries.pop(pair, None)
            log.warning("model cache: %s has no production version any more", pair)
            return
        log.info("model cache: %s production moved %s -> %s", pair, e.version, current)
        self.stats.reloads += 1
        with self._lock:
            self._entries.pop(pair, None)
        self._load(pair, expected=current)

    def refresh_aliases(self) -> list[str]:
        """Check every cached pair's ``production`` alias; returns the pairs that changed."""
        changed = []
        for pair in self.pairs():
            e = self._entries.get(pair)
            if e is None:
                continue
            before = e.version
            try:
                self._check(pair, e)
            except Exception as exc:  # keep serving the cached version
                log.warning("model cache: alias check of %s failed: %s", pair, exc)
                continue
            after = self._entries.get(pair)
            if after is None or after.version != before:
                changed.append(pair)
        return changed

    def reload(self, pair: str) -> ModelArtifact | None:
        """Apply a promotion/rollback now (None when the pair has no production version)."""
        pair = normalize_pair(pair)
        with self._lock:
            self._entries.pop(pair, None)
        try:
            return self._load(pair)
        except ModelNotFoundError:
            return None

    def prewarm(self, pairs: Iterable[str]) -> dict[str, str]:
        """Load these pairs now; returns pair -> version or error text (never raises)."""
        out: dict[str, str] = {}
        for p in pairs:
            try:
                out[p] = str(self.get(normalize_pair(p)).version)
            except Exception as e:
                out[p] = f"error: {getattr(e, 'message', e)}"
        return out
