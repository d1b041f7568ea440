"""The feature pipeline: one implementation for batch and online.

Column layout (809 by default, stable order)::

    142 lagged-family features (BQX 40, REG 57, technical 45)          unlagged
    the same 142 at lag 60, then 120, 180, 240 bars                     4 x 142
    86 non-lagged features (volume, currency, stats, bollinger, time,
        spread, correlation, fibonacci, derived)
    13 causality features: the 6 w60_* and 7 agg_* BQX features at lag 61

Lags count rows of the trading-time grid (:mod:`bqx.features.panel`).

Target: ``y(t) = bqx_h(t+h)`` (h = 60 by default): depends only on bars t..t+h. The
alternative ``target="return"`` is ``ln(close_{t+h}/close_t)``.

``build`` evaluates every family on the whole history of the requested range; ``at``
evaluates them on the ``lookback()`` rows before the as-of bar, only at the rows a single
prediction needs (t, its lags): families with a point path (``Family.compute_online``)
compute each value from the window ending at its row only, the others run their batch code
on the short window. Batch and online agree to rounding (5e-10 of each column's scale is
tested; fibonacci and time features bit for bit); the online call with ``only=`` equals the
full online call bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import bars_lower_bound, to_utc
from bqx.data.bars import ts_ns
from bqx.errors import NoDataError
from bqx.features import _jit
from bqx.features.context import Ctx, Family, Spec
from bqx.features.families import FAMILIES
from bqx.features.families.bqx import bqx_avg_at
from bqx.features.panel import Panel
from bqx.universe import PAIRS, normalize_pair

LAGS: tuple[int, ...] = (60, 120, 180, 240)
CAUSAL_LAG = 61
PIPELINE_VERSION = "1"

_extra_families: list[Family] = []


# =========================================================================================
# registry
# =========================================================================================
def register_family(family: Family) -> None:
    """Add a user family (appended after the built-in columns). Check it with
    ``bqx features check-lookahead`` / :func:`bqx.features.lookahead.check_lookahead`."""
    names = set(base_names())
    clash = [n for n in family.names if n in names]
    if clash:
        raise ValueError(f"feature names already registered: {clash}")
    _extra_families.append(family)
    _layout.cache_clear()


def unregister_family(name: str) -> None:
    _extra_families[:] = [f for f in _extra_families if f.name != name]
    _layout.cache_clear()


def families() -> tuple[Family, ...]:
    return FAMILIES + tuple(_extra_families)


def base_specs() -> list[Spec]:
    return [s for f in families() for s in f.specs]


def base_names() -> list[str]:
    return [s.name for s in base_specs()]


@dataclass(frozen=True)
class Layout:
    columns: tuple[str, ...]
    lagged: tuple[str, ...]
    nonlagged: tuple[str, ...]
    causal: tuple[str, ...]
    lookback: int
    version: str


@lru_cache(maxsize=1)
def _layout() -> Layout:
    fams = families()
    lagged = [s.name for f in fams if f.lagged for s in f.specs]
    nonlagged = [s.name for f in fams if not f.lagged for s in f.specs]
    causal = [n for n in lagged if n.startswith(("w60_", "agg_"))]
    cols = (
        lagged
        + [f"{n}_lag{lag}" for lag in LAGS for n in lagged]
        + nonlagged
        + [f"{n}_lag{CAUSAL_LAG}" for n in causal]
    )
    if len(set(cols)) != len(cols):
        raise ValueError("duplicate feature column names")
    specs = {s.name: s for s in base_specs()}
    lb = 0
    for f in fams:
        for s in f.specs:
            extra = max(LAGS) if f.lagged else 0
            if s.name in causal:
                extra = max(extra, CAUSAL_LAG)
            lb = max(lb, s.lookback + extra)
    del specs
    h = hashlib.sha256(
        (
            "|".join(cols)
            + f"|v{PIPELINE_VERSION}|"
            + "|".join(f"{s.name}:{s.lookback}" for s in base_specs())
        ).encode()
    ).hexdigest()[:12]
    return Layout(tuple(cols), tuple(lagged), tuple(nonlagged), tuple(causal), lb, h)


def columns() -> list[str]:
    """The candidate feature columns, in their stable order (809 by default)."""
    return list(_layout().columns)


def lookback() -> int:
    """Rows of history before the as-of bar that the online path needs (lags included)."""
    return _layout().lookback


def feature_set_version() -> str:
    """A hash of the column layout, lookbacks and pipeline version (stored with models)."""
    return _layout().version


def catalog() -> pd.DataFrame:
    """One row per candidate column: name, base feature, family, lag, lookback, description."""
    lay = _layout()
    specs = {s.name: s for s in base_specs()}
    rows = []
    for col in lay.columns:
        base, lag = col, 0
        if "_lag" in col:
            b, _, lg = col.rpartition("_lag")
            if b in specs and lg.isdigit():
                base, lag = b, int(lg)
        s = specs[base]
        rows.append(
            {
                "name": col,
                "base": base,
                "family": s.family,
                "lag": lag,
                "lookback": s.lookback + lag,
                "needs": ",".join(s.needs),
                "description": s.description + (f"; value {lag} bars ago" if lag else ""),
            }
        )
    return pd.DataFrame(rows)


# =========================================================================================
# evaluation
# =========================================================================================
def _infer_interval(ts: np.ndarray) -> timedelta:
    u = np.unique(ts)
    if len(u) < 2:
        return timedelta(minutes=1)
    d = np.diff(u)
    return pd.Timedelta(int(np.median(d)), unit="ns").to_pytimedelta()


def as_panel(
    bars: pd.DataFrame | Panel, interval: timedelta | None = None, max_ffill: int = 5
) -> Panel:
    """A Panel from a long bar frame (or the Panel itself)."""
    if isinstance(bars, Panel):
        return bars
    if not len(bars):
        raise NoDataError("no bars given")
    if interval is None:
        interval = _infer_interval(ts_ns(bars["ts"]))
    return Panel.from_bars(bars, interval=interval, max_ffill=max_ffill)


def _eval_family(
    fam: Family,
    ctx: Ctx,
    pos: np.ndarray,
    idx: Sequence[int] | None = None,
    online: bool = False,
) -> np.ndarray:
    """Evaluate a family at ``pos`` (NaN for negative positions); with ``idx`` only those of
    its specs (columns in ``idx`` order). ``online``: a handful of rows, evaluated by the
    family's point path when it has one (the same for every subset of its specs)."""
    m = len(fam.specs) if idx is None else len(idx)

    def run(p: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            if online and fam.compute_online is not None:
                vals = fam.compute_online(ctx, p, range(m) if idx is None else idx)
            elif idx is None:
                vals = fam.compute(ctx, p)
            elif fam.compute_subset is not None:
                vals = fam.compute_subset(ctx, p, idx)
            else:
                vals = fam.compute(ctx, p)[:, list(idx)]
        if vals.shape != (len(p), m):
            raise ValueError(f"family {fam.name} returned shape {vals.shape}")
        return vals

    ok = pos >= 0
    if ok.all():
        return run(pos)
    out = np.full((len(pos), m), np.nan)
    if ok.any():
        out[ok] = run(pos[ok])
    return out


def _target(lc: np.ndarray, pos: np.ndarray, horizon: int, kind: str) -> np.ndarray:
    n = len(lc)
    y = np.full(len(pos), np.nan)
    ok = pos + horizon < n
    p = pos[ok]
    if kind == "return":
        y[ok] = lc[p + horizon] - lc[p]
    elif kind == "bqx":
        y[ok] = bqx_avg_at(lc, horizon, p + horizon)
    else:
        raise ValueError(f"unknown target {kind!r}; use 'bqx' or 'return'")
    return y


def build(
    bars: pd.DataFrame | Panel,
    pair: str,
    *,
    start: Any = None,
    end: Any = None,
    with_target: bool = False,
    horizon: int = 60,
    target: str = "bqx",
    interval: timedelta | None = None,
    max_ffill: int = 5,
    dtype: Any = np.float64,
) -> pd.DataFrame:
    """All candidate features of ``pair`` for every bar in ``[start, end]``.

    ``bars`` is a long frame of many pairs (pair, ts, open, high, low, close, volume, spread)
    or a :class:`Panel`. Rows are the pair's bars (observed or forward-filled) on the
    trading-time grid, indexed by ``ts``; bars before ``start`` serve as history. With
    ``with_target`` a ``target`` column is added (NaN where the horizon runs past the data).
    """
    pair = normalize_pair(pair)
    panel = as_panel(bars, interval, max_ffill)
    j = panel.col(pair)
    lo, hi = 0, len(panel) - 1
    if start is not None:
        lo = int(np.searchsorted(panel.ts, to_utc(start).value, side="left"))
    if end is not None:
        hi = int(np.searchsorted(panel.ts, to_utc(end).value, side="right")) - 1
    rows = np.arange(lo, hi + 1)
    rows = rows[np.isfinite(panel.close[rows, j])] if len(rows) else rows
    cols = columns()
    if not len(rows):
        out = pd.DataFrame(columns=cols + (["target"] if with_target else []), dtype=dtype)
        out.index = pd.DatetimeIndex([], tz="UTC", name="ts")
        return out
    lay = _layout()
    # evaluate on a context that starts lookback rows before the first output row
    c0 = max(0, int(rows[0]) - lay.lookback - 1)
    c1 = int(rows[-1]) + 1 + (horizon if with_target else 0)
    sub = panel if (c0 == 0 and c1 >= len(panel)) else panel.slice_rows(c0, c1)
    ctx = Ctx(sub, pair)
    q = rows - c0
    b_lo = max(0, int(q[0]) - max(max(LAGS), CAUSAL_LAG))
    base = _base_values(ctx, np.arange(b_lo, int(q[-1]) + 1))
    # column-major result: every block below is a contiguous copy
    result = np.empty((len(cols), len(q)), dtype=dtype).T
    contiguous = bool(q[-1] - q[0] == len(q) - 1)
    for a, b, shift_, src in _blocks():
        idx = q - shift_ - b_lo
        ok = idx >= 0
        if contiguous and ok.all():
            result[:, a:b] = base[idx[0] : idx[-1] + 1, src[0] : src[1]]
        elif ok.all():
            result[:, a:b] = base[idx, src[0] : src[1]]
        else:
            result[:, a:b] = np.nan
            result[ok, a:b] = base[idx[ok], src[0] : src[1]]
    idx = pd.DatetimeIndex(sub.ts[q].astype("datetime64[ns]")).tz_localize("UTC")
    idx.name = "ts"
    df = pd.DataFrame(result, index=idx, columns=cols, copy=False)
    if with_target:
        df["target"] = _target(ctx.lc, q, horizon, target).astype(dtype)
    df.attrs["pair"] = pair
    df.attrs["missing_fields"] = panel.missing_fields(pair)
    df.attrs["missing_pairs"] = panel.missing_pairs()
    return df


def _base_values(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """All base features (``base_names()`` order) at ``pos``: (len(pos), n_base)."""
    fams = families()
    out = np.empty((sum(len(f.specs) for f in fams), len(pos))).T  # column-major
    k = 0
    for fam in fams:
        m = len(fam.specs)
        out[:, k : k + m] = _eval_family(fam, ctx, pos)
        k += m
    return out


@lru_cache(maxsize=4)
def _blocks_cached(version: str) -> list[tuple[int, int, int, tuple[int, int]]]:
    """(first column, end column, row shift, (first base column, end base column)) runs that
    map the base matrix onto the candidate layout; consecutive columns are merged."""
    lay = _layout()
    base_ix = {n: i for i, n in enumerate(base_names())}
    lagged = set(lay.lagged)
    entries: list[tuple[int, int]] = []  # per output column: (shift, base index)
    for col in lay.columns:
        if col in base_ix:
            entries.append((0, base_ix[col]))
            continue
        b, _, lg = col.rpartition("_lag")
        if (b in lagged or b in lay.causal) and lg.isdigit():
            entries.append((int(lg), base_ix[b]))
        else:  # pragma: no cover - layout invariant
            raise ValueError(f"cannot map column {col}")
    runs: list[tuple[int, int, int, tuple[int, int]]] = []
    i = 0
    while i < len(entries):
        sh, b0 = entries[i]
        j = i + 1
        while j < len(entries) and entries[j] == (sh, b0 + (j - i)):
            j += 1
        runs.append((i, j, sh, (b0, b0 + (j - i))))
        i = j
    return runs


def _blocks() -> list[tuple[int, int, int, tuple[int, int]]]:
    return _blocks_cached(_layout().version)


def at(
    bars: pd.DataFrame | Panel,
    pair: str,
    ts: Any = None,
    *,
    interval: timedelta | None = None,
    max_ffill: int = 5,
) -> pd.Series:
    """The candidate features of ``pair`` at the last bar at or before ``ts`` (default: the
    last bar), computed from only the ``lookback()`` rows before it. The Series' ``name`` is
    the as-of bar's timestamp."""
    values, asof = at_array(bars, pair, ts, interval=interval, max_ffill=max_ffill)
    s = pd.Series(values, index=columns(), name=asof)
    return s


def at_array(
    bars: pd.DataFrame | Panel,
    pair: str,
    ts: Any = None,
    *,
    interval: timedelta | None = None,
    max_ffill: int = 5,
    only: Sequence[str] | None = None,
) -> tuple[np.ndarray, pd.Timestamp]:
    """Like :func:`at` but returns (values in ``columns()`` order, as-of timestamp): the fast
    path for serving (no pandas objects on the way).

    With ``only`` (candidate column names: a model's selected features and what its
    intervals read), only those are computed (families none of them belong to are skipped,
    families that can are asked for just those specs) and every other entry is NaN. Each
    computed value is the one of the full call bit for bit: same history window, same rows,
    same arithmetic (tested in ``tests/features/test_parity.py``)."""
    pair = normalize_pair(pair)
    if isinstance(bars, Panel):
        panel = bars
        if ts is None:
            ts = pd.Timestamp(int(panel.ts[-1]), tz="UTC")
        p = panel.row_at_or_before(ts, pair)
    else:
        panel, p = _online_panel(bars, pair, ts, interval, max_ffill)
    return at_row(panel, pair, p, only), pd.Timestamp(int(panel.ts[p]), tz="UTC")


def at_row(panel: Panel, pair: str, p: int, only: Sequence[str] | None = None) -> np.ndarray:
    """:func:`at_array` at row ``p`` of ``panel`` (a row where ``pair`` has a close, as
    ``panel.row_at_or_before(ts, pair)`` finds it; ``pair`` normalized): the values alone,
    for a caller that has found the row already (the service: one lookup per request)."""
    if only is not None:
        # no log of the whole panel: the pair's log close comes with its block
        # (Ctx.block), the currency indices take the log of the columns and rows they read
        return _at_subset(panel, pair, p, _subset_plan(tuple(only)))
    # log prices once on the whole panel (cached there): the family slices below share
    # views of it instead of each taking the log of its own 28-pair slice
    panel.log_close  # noqa: B018
    out = np.empty(len(_layout().columns))
    j = panel.col(pair)
    for fam, need, lag_rel, cur_ix, lag_ix, causal_k, causal_ix in _online_plan():
        # each family sees only the rows its declared lookback needs
        c0 = max(0, p - need)
        ctx = Ctx.window(panel, pair, j, c0, p + 1)
        q = p - c0
        vals = _eval_family(fam, ctx, q - lag_rel, online=True)
        out[cur_ix] = vals[0]
        if lag_ix is not None:
            out[lag_ix] = vals[1 : 1 + len(LAGS)].T.ravel()
        if causal_ix is not None:
            out[causal_ix] = vals[-1, causal_k]
    return out


def warm_up(pair: str = "EURUSD") -> float:
    """Compile (or load from numba's disk cache) the online path's kernels now: both online
    calls (all columns and ``only=``) on a synthetic panel of all 28 pairs, so every
    family's point path runs once with the argument types of a real call. Returns the
    seconds it took. A server calls it before it reports ready: a kernel compiled on a
    request holds the GIL for seconds (tens on a cold cache), which stalled the other
    threads of its worker (state-database writes timed out under a second worker).

    On a cold cache (no warm-up has finished for this source tree and path yet) two
    processes compile the families first, half each, into the shared disk cache: ~30 s of
    compiling in about half the wall time on 2 cores; this process then loads them.

    Processes that warm up at the same time on a cold cache (``bqx serve --workers N``
    after a deploy) take turns through a lock file beside the marker: the first compiles,
    the others wait and then load its kernels from the cache (~1.5 s each) instead of
    each starting its own two compile processes (N x 30 s of CPU on the same cores)."""
    import time

    t0 = time.perf_counter()
    marker = _jit.warm_marker()
    cold = _jit.enabled() and not marker.exists()
    with _exclusive(marker.with_name(marker.name + ".lock")) if cold else contextlib.nullcontext():
        if cold and not marker.exists() and (os.cpu_count() or 1) > 1:
            _compile_in_two_processes(pair)
        panel = _warm_panel()
        at_array(panel, pair)
        at_array(panel, pair, only=tuple(columns()))
        if _jit.enabled():
            with contextlib.suppress(OSError):  # a read-only cache: warm-ups stay sequential
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
    return time.perf_counter() - t0


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block: other
    processes wait; the kernel releases it if the holder dies (``kill -9``). Without a
    writable directory or ``fcntl`` (not POSIX) the block runs unlocked."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _warm_panel() -> Panel:
    """Random-walk bars of all 28 pairs, longer than every family's window, so the online
    calls take the serving path (full windows, the fast plan), not the short-history
    fallbacks."""
    n, k = lookback() + 16, len(PAIRS)
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000 + 1_704_153_600_000_000_000
    rng = np.random.default_rng(0)
    px = np.exp(np.cumsum(rng.normal(0.0, 1e-4, (n, k)), axis=0))
    return Panel(
        ts=ts, pairs=list(PAIRS), open=px, high=px * 1.001, low=px * 0.999, close=px.copy(),
        volume=np.ones((n, k)), spread=np.full((n, k), 1e-4),
        observed=np.ones((n, k), dtype=bool), interval=timedelta(minutes=1), max_ffill=5,
    )  # fmt: skip


def warm_families(names: Sequence[str], pair: str = "EURUSD") -> None:
    """The online kernels of the families ``names`` compiled into the disk cache (one
    ``only=`` call with their features)."""
    only = tuple(n for f in families() if f.name in names for n in f.names)
    if only:
        at_array(_warm_panel(), pair, only=only)


def _compile_in_two_processes(pair: str) -> None:
    """The technical family (about half of the compile time) in one process, every other
    family in another, at the same time; a process that fails leaves its kernels to the
    caller (compiled on first use)."""
    import subprocess
    import sys

    names = [f.name for f in families()]
    groups = [["technical"], [n for n in names if n != "technical"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = "import sys; from bqx.features.pipeline import warm_families as w; w(sys.argv[1:], {!r})"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code.format(pair), *g],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for g in groups
        if g
    ]
    for pr in procs:
        try:
            pr.wait(timeout=600)
        except subprocess.TimeoutExpired:
            pr.kill()


def _online_panel(
    bars: pd.DataFrame, pair: str, ts: Any, interval: timedelta | None, max_ffill: int
) -> tuple[Panel, int]:
    """The Panel ``at()`` needs from a long bar frame, and the as-of row in it.

    Pivoting the whole history costs ~0.7 s for 28 pairs x 30 days, so only the bars in
    (bound, t] are pivoted, where the bound lies ``lookback() + max_ffill`` trading bars
    before ``t`` on the calendar. That window gives bit-identical features: the grid up to
    ``t`` depends only on bars at or before ``t`` (bars after it are irrelevant by
    causality), the grid of the window equals the full grid from its first bar on, and the
    features read only ``lookback()`` rows whose forward-fill sources lie at most
    ``max_ffill`` rows earlier. When the window falls short (gaps, a stale pair) it is
    widened; when it would drop a pair of the frame (which changes the currency indices),
    the whole frame is used, as before.
    """
    if not len(bars):
        raise NoDataError("no bars given")
    ts_all = ts_ns(bars["ts"])
    t = to_utc(ts).value if ts is not None else int(ts_all.max())
    if interval is None:
        interval = _infer_interval_near(ts_all, t)
    rows_needed = lookback() + max_ffill
    t_min = int(ts_all.min())
    all_pairs: set[str] | None = None
    k = rows_needed + 1
    while True:
        lb = bars_lower_bound(pd.Timestamp(t, tz="UTC"), k, interval).value
        if lb < t_min:
            break  # the window reaches the first bar: nothing to cut
        sel = (ts_all > lb) & (ts_all <= t)
        window = bars[sel]
        in_window = set(pd.unique(window["pair"]))
        if in_window != _ALL_PAIRS:  # the usual case (all 28 present) needs no full scan
            if all_pairs is None:
                all_pairs = set(pd.unique(bars["pair"]))
            if not len(window) or in_window != all_pairs:
                break
        panel = Panel.from_bars(window, interval=interval, max_ffill=max_ffill)
        p = panel.row_at_or_before(pd.Timestamp(t, tz="UTC"), pair)
        if p >= rows_needed:
            return panel, p
        k *= 4
    panel = Panel.from_bars(bars, interval=interval, max_ffill=max_ffill)
    return panel, panel.row_at_or_before(pd.Timestamp(t, tz="UTC"), pair)


_ALL_PAIRS = set(PAIRS)


def _infer_interval_near(ts: np.ndarray, t: int) -> timedelta:
    """:func:`_infer_interval` from the bars just before ``t`` (at least 200 distinct
    timestamps, or all of them): the median spacing, without sorting the whole history."""
    day = 86_400 * 10**9
    span = 2 * day
    t_min = int(ts.min())
    while True:
        near = ts[(ts > t - span) & (ts <= t)]
        u = np.unique(near)
        if len(u) >= 200 or t - span < t_min:
            return _infer_interval(u if len(u) >= 2 else ts)
        span *= 4


@lru_cache(maxsize=4)
def _online_plan_cached(version: str) -> list[tuple[Any, ...]]:
    """Per family: rows of history needed, row offsets to evaluate (t, its lags, the causal
    lag), and where the values go in the output vector."""
    lay = _layout()
    col_ix = {c: i for i, c in enumerate(lay.columns)}
    plan: list[tuple[Any, ...]] = []
    for fam in families():
        names = fam.names
        lb = max(s.lookback for s in fam.specs)
        cur_ix = np.array([col_ix[n] for n in names])
        if fam.lagged:
            causal_k = np.array([k for k, n in enumerate(names) if n in lay.causal], dtype=int)
            rel = [0, *LAGS] + ([CAUSAL_LAG] if len(causal_k) else [])
            need = lb + max(rel)
            # lag-major order so that vals[1:5].T.ravel() matches it
            lag_ix = np.array([[col_ix[f"{n}_lag{lag}"] for lag in LAGS] for n in names]).ravel()
            causal_ix = (
                np.array([col_ix[f"{names[k]}_lag{CAUSAL_LAG}"] for k in causal_k])
                if len(causal_k)
                else None
            )
            plan.append((fam, need, np.array(rel), cur_ix, lag_ix, causal_k, causal_ix))
        else:
            plan.append((fam, lb, np.array([0]), cur_ix, None, None, None))
    return plan


def _online_plan() -> list[tuple[Any, ...]]:
    return _online_plan_cached(_layout().version)


def _at_subset(panel: Panel, pair: str, p: int, plan: list[tuple[Any, ...]]) -> np.ndarray:
    out = np.full(len(_layout().columns), np.nan)
    j = panel.col(pair)
    fast_plan, longest = _fast_plan(plan)
    first = max(0, p - longest)  # the first row any window below reads
    with np.errstate(all="ignore"):
        for fam, need, rel, idx, row_ix, col_ix, out_ix, fast in fast_plan:
            c0 = max(0, p - need)  # the same window and rows as the full call
            # row-local intermediates (returns, true range, ...) taken once per panel
            ctx = Ctx.window(panel, pair, j, c0, p + 1, shared=first)
            if fast is not None and c0 > 0:
                # the usual case (the window is full: the rows are need - rel, the same
                # every call): the family's point path directly, as _eval_family calls it
                q, ix, m, single, flat_ix = fast
                vals = fam.compute_online(ctx, q, ix)
                if vals.shape != (len(q), m):
                    raise ValueError(f"family {fam.name} returned shape {vals.shape}")
                # one row with the columns in plan order, or the cells' flat indices
                out[out_ix] = vals[0] if single else vals.take(flat_ix)
                continue
            q = (p - c0) - rel
            vals = _eval_family(fam, ctx, q, idx, online=True)
            out[out_ix] = vals[row_ix, col_ix]
    return out


_FAST: dict[int, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]] = {}


def _fast_plan(plan: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], int]:
    """``plan`` with what the per-call loop would otherwise recompute: per family (or None
    without a point path) the rows of a full window (``need - rel``: the same array every
    call, never written), the spec indices to pass, the number of columns, whether the values
    are one row already in output order, and the cells' flat indices in the values; and
    the longest history a family of the plan reads."""
    hit = _FAST.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1], hit[2]
    fast: list[tuple[Any, ...]] = []
    for fam, need, rel, idx, row_ix, col_ix, out_ix in plan:
        m = len(fam.specs) if idx is None else len(idx)
        extra = None
        if fam.compute_online is not None and need >= int(rel.max()):
            single = len(rel) == 1 and np.array_equal(col_ix, np.arange(m))
            # (writable: a compiled kernel would otherwise be compiled a second time for a
            # read-only array; nothing writes it)
            q = need - rel
            flat_ix = row_ix * m + col_ix
            extra = (q, range(m) if idx is None else idx, m, single, flat_ix)
        fast.append((fam, need, rel, idx, row_ix, col_ix, out_ix, extra))
    if len(_FAST) > 512:
        _FAST.clear()
    longest = max((f[1] for f in plan), default=0)
    _FAST[id(plan)] = (plan, fast, longest)
    return fast, longest


def _subset_plan(names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return _subset_plan_cached(_layout().version, names)


@lru_cache(maxsize=256)
def _subset_plan_cached(version: str, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The online plan restricted to the families, specs and lags that ``names`` need:
    per family (family, rows of history, row offsets, spec indices or None for all,
    then for each wanted value its row, its column in the evaluated block and its output
    index). Row offsets and history windows are those of the full plan, so values match."""
    col_ix = _col_index()
    unknown = [n for n in names if n not in col_ix]
    if unknown:
        raise ValueError(f"unknown feature columns: {unknown[:5]}")
    want = {col_ix[n] for n in names}
    plan: list[tuple[Any, ...]] = []
    for fam, need, rel, cur_ix, lag_ix, causal_k, causal_ix in _online_plan():
        # every (row of rel, spec k) -> output index, as the full plan writes it
        cells: list[tuple[int, int, int]] = [(0, k, int(o)) for k, o in enumerate(cur_ix)]
        if lag_ix is not None:
            for i, o in enumerate(lag_ix):  # lag-major per spec: (spec, lag)
                k, li = divmod(i, len(LAGS))
                cells.append((1 + li, k, int(o)))
        if causal_ix is not None:
            for k, o in zip(causal_k, causal_ix, strict=True):
                cells.append((len(rel) - 1, int(k), int(o)))
        cells = [c for c in cells if c[2] in want]
        if not cells:
            continue
        specs = sorted({k for _, k, _ in cells})
        where = {k: i for i, k in enumerate(specs)}
        idx = None if len(specs) == len(fam.specs) else tuple(specs)
        plan.append(
            (
                fam,
                need,
                rel,
                idx,
                np.array([r for r, _, _ in cells]),
                np.array([(k if idx is None else where[k]) for _, k, _ in cells]),
                np.array([o for _, _, o in cells]),
            )
        )
    return plan


@lru_cache(maxsize=4)
def _col_index_cached(version: str) -> dict[str, int]:
    return {c: i for i, c in enumerate(_layout().columns)}


def _col_index() -> dict[str, int]:
    return _col_index_cached(_layout().version)


def target_series(
    bars: pd.DataFrame | Panel,
    pair: str,
    *,
    horizon: int = 60,
    target: str = "bqx",
    interval: timedelta | None = None,
    max_ffill: int = 5,
) -> pd.Series:
    """The target alone for every bar of ``pair`` (NaN where the horizon is not yet known)."""
    pair = normalize_pair(pair)
    panel = as_panel(bars, interval, max_ffill)
    j = panel.col(pair)
    rows = np.flatnonzero(np.isfinite(panel.close[:, j]))
    lc = panel.log_close[:, j]
    y = _target(lc, rows, horizon, target)
    idx = pd.DatetimeIndex(panel.ts[rows].astype("datetime64[ns]")).tz_localize("UTC")
    idx.name = "ts"
    return pd.Series(y, index=idx, name="target")


def missing_report(
    bars: pd.DataFrame | Panel, pairs: Sequence[str] | None = None
) -> dict[str, Any]:
    """Which source fields/pairs are absent and how many candidate columns become NaN."""
    panel = as_panel(bars)
    specs = {s.name: s for s in base_specs()}
    cat = catalog()
    out: dict[str, Any] = {"missing_pairs": panel.missing_pairs(), "pairs": {}}
    for p in pairs or panel.pairs:
        miss = panel.missing_fields(p)
        needs = set(miss) | ({"cross"} if panel.missing_pairs() else set())
        affected = [
            c for c, b in zip(cat["name"], cat["base"], strict=True) if set(specs[b].needs) & needs
        ]
        out["pairs"][p] = {"missing_fields": miss, "nan_columns": len(affected)}
    return out
