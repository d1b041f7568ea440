"""Lookahead audit: prove, on your own data, that no feature at bar t reads a bar after t.

How it works
------------
For ``samples`` bars t spread over the data (each with at least :func:`~bqx.features.lookback`
rows of history), the audit

1. computes every candidate column with the *full* data (``build(bars, pair)``: the batch
   path, whose context runs to the end of the data);
2. throws away every bar after t, rebuilds the trading-time panel from what is left
   (``Panel.from_bars(bars[bars.ts <= t])``: the grid and the fill policy are re-derived too)
   and evaluates the same bar twice more: ``at(cut, pair, t)`` (the online path, which sees
   only the lookback window) and ``build(cut, pair, start=t, end=t)``;
3. reports every column where either re-computation differs from the full-history value by
   more than ``tol`` times the column's scale (its median absolute value over the full
   build), or is NaN where the other is not.

A causal feature with a correctly declared lookback gives the same value (to rounding) all
three ways. A column that differs either reads the future (the value changes once the future
is removed) or reads more history than its :class:`~bqx.features.context.Spec` declares (the
online window is then too short): both break training/serving parity, so both are reported.
The target is not checked: it legitimately uses the next ``horizon`` bars.

Adding and checking your own feature family
-------------------------------------------
A family is a set of :class:`~bqx.features.context.Spec` (name, family, description,
lookback in rows, extra source fields needed) and a ``compute(ctx, pos)`` function that
returns a ``(len(pos), n_specs)`` array: the values at rows ``pos`` of the context
(:class:`~bqx.features.context.Ctx`: ``ctx.o/h/l/c/v/s`` are the pair's open, high, low,
close, tick volume and spread on the trading-time grid, ``ctx.lc`` log close, ``ctx.r`` the
one-bar log return). Use the primitives of :mod:`bqx.features._ops` (trailing windows only)::

    import numpy as np
    from bqx import features as F
    from bqx.features._ops import rolling_mean, safe_div
    from bqx.features.context import Family, Spec
    from bqx.features.lookahead import check_lookahead

    def compute(ctx, pos):
        return safe_div(ctx.c, rolling_mean(ctx.c, 30))[pos][:, None] - 1.0

    fam = Family("mine", lagged=False, compute=compute,
                 specs=(Spec("close_sma30", "mine", "close / SMA30 - 1", lookback=29),))
    F.register_family(fam)            # appended after the 809 built-in columns
    report = check_lookahead(bars, pairs=["EURUSD"], samples=20)
    assert report.ok, report.leaking

(``lagged=True`` also adds the family at lags 60/120/180/240.) From the command line, put
the ``register_family`` call in a module or file and run
``bqx features check-lookahead --plugin my_features.py``: it imports the plugin, runs the
same audit on the stored bars (default: the last two weeks) and exits with code 1 when a
column differs (``bqx features catalog --plugin ...`` and ``show --plugin ...`` load it too).
Typical mistakes it catches: reading ``ctx.c[pos + 1]``, centred windows, normalising by a
statistic of the whole context (its max, mean, std...), and a ``lookback`` declared shorter
than the window actually used.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import to_utc
from bqx.data.bars import normalize_bars, ts_ns
from bqx.errors import NoDataError
from bqx.features.panel import Panel
from bqx.features.pipeline import as_panel, at_array, build, catalog, columns, lookback
from bqx.universe import normalize_pairs

LEAK_COLUMNS = [
    "column",
    "base",
    "family",
    "n_samples",
    "nan_mismatch",
    "max_abs_diff",
    "max_rel_diff",
    "paths",
]


@dataclass
class LookaheadReport:
    """Result of :func:`check_lookahead`.

    ``leaking`` has one row per differing column: ``n_samples`` is the number of (bar, pair)
    comparisons where it differed, ``nan_mismatch`` how many of those were NaN on one side
    only, ``max_abs_diff`` / ``max_rel_diff`` the largest difference among finite values
    (relative = divided by the column's scale), ``paths`` which re-computation differed
    (``at``: online, ``build``: batch on the cut data).
    """

    ok: bool
    pairs: list[str]
    samples: int
    leaking: pd.DataFrame
    seconds: float
    timestamps: list[pd.Timestamp] = field(default_factory=list)
    columns_checked: int = 0
    comparisons: int = 0
    tol: float = 1e-9

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (NaN becomes None)."""
        rows = []
        for r in self.leaking.to_dict("records"):
            rows.append({k: _jsonable(v) for k, v in r.items()})
        return {
            "ok": self.ok,
            "pairs": list(self.pairs),
            "samples": self.samples,
            "timestamps": [t.isoformat() for t in self.timestamps],
            "columns_checked": self.columns_checked,
            "comparisons": self.comparisons,
            "tol": self.tol,
            "leaking_columns": len(self.leaking),
            "leaking_bases": sorted(set(self.leaking["base"])) if len(self.leaking) else [],
            "leaking": rows,
            "seconds": round(self.seconds, 3),
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if np.isfinite(f) else None
    return v


def panel_to_bars(panel: Panel) -> pd.DataFrame:
    """The observed bars of a Panel as a long frame sorted by ts (forward-filled rows are
    dropped: the cut panels re-derive them with the same fill policy)."""
    r, c = np.nonzero(panel.observed)
    ts = pd.DatetimeIndex(panel.ts[r].astype("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "pair": np.asarray(panel.pairs, dtype=object)[c],
            "ts": ts,
            "open": panel.open[r, c],
            "high": panel.high[r, c],
            "low": panel.low[r, c],
            "close": panel.close[r, c],
            "volume": panel.volume[r, c],
            "spread": panel.spread[r, c],
        }
    )


def _column_scale(values: np.ndarray) -> np.ndarray:
    """Per-column scale for relative differences: median |value|, else max |value|, else 1."""
    a = np.abs(values)
    with np.errstate(all="ignore"):
        fin = np.isfinite(a)
        has = fin.any(axis=0)
        med = np.full(a.shape[1], np.nan)
        mx = np.full(a.shape[1], np.nan)
        if has.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med[has] = np.nanmedian(a[:, has], axis=0)
                mx[has] = np.nanmax(a[:, has], axis=0)
    scale = np.where(med > 0, med, mx)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _pick_rows(cand: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """``samples`` rows of ``cand``, one drawn at random from each of equal-size strata, so
    the samples cover the whole range of the data."""
    k = min(samples, len(cand))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, len(cand), k + 1).astype(np.int64)
    return np.array([cand[rng.integers(a, b)] for a, b in itertools.pairwise(edges)])


class _Acc:
    """Per-column accumulator of differences over the comparisons."""

    def __init__(self, n: int):
        self.count = np.zeros(n, dtype=np.int64)
        self.nan_mismatch = np.zeros(n, dtype=np.int64)
        self.max_abs = np.full(n, np.nan)
        self.max_rel = np.full(n, np.nan)
        self.paths: list[set[str]] = [set() for _ in range(n)]

    def add(
        self, ref: np.ndarray, got: dict[str, np.ndarray], scale: np.ndarray, tol: float
    ) -> None:
        any_bad = np.zeros(len(ref), dtype=bool)
        nan_bad = np.zeros(len(ref), dtype=bool)
        nan_ref = np.isnan(ref)
        for path, v in got.items():
            nan_v = np.isnan(v)
            nb = nan_ref != nan_v
            both = ~(nan_ref | nan_v)
            diff = np.zeros(len(ref))
            diff[both] = np.abs(v[both] - ref[both])
            rel = diff / scale
            bad = nb | (rel > tol)
            for j in np.flatnonzero(bad):
                self.paths[j].add(path)
            fin_bad = bad & both
            self.max_abs[fin_bad] = np.fmax(self.max_abs[fin_bad], diff[fin_bad])
            self.max_rel[fin_bad] = np.fmax(self.max_rel[fin_bad], rel[fin_bad])
            any_bad |= bad
            nan_bad |= nb
        self.count += any_bad
        self.nan_mismatch += nan_bad


def check_lookahead(
    bars: pd.DataFrame | Panel,
    pairs: Sequence[str] | str | None = None,
    samples: int = 20,
    seed: int = 0,
    tol: float = 1e-9,
    *,
    start: Any = None,
    end: Any = None,
    interval: timedelta | None = None,
    max_ffill: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> LookaheadReport:
    """Re-compute the candidate features on data cut off at sampled bars and compare them with
    the full-history values (see the module docstring).

    ``bars``: a long bar frame of many pairs, or a Panel (its observed bars are used). Give
    all pairs you have even when checking one: currency indices and correlations read them.
    ``pairs``: the pairs to check (default: every pair in the data). ``samples``: bars t to
    check, spread evenly over ``[start, end]`` (default: all the data) among the bars with at
    least ``lookback()`` grid rows of history. ``tol``: relative tolerance, in units of each
    column's median absolute value. Cost: one panel rebuild per sample plus, per pair, one
    full build and two single-bar evaluations per sample.
    """
    t0 = time.perf_counter()
    if samples < 1:
        raise ValueError("samples must be >= 1")
    if isinstance(bars, Panel):
        panel = bars
        long = panel_to_bars(panel)
    else:
        if not len(bars):
            raise NoDataError("no bars given to the lookahead audit")
        long = normalize_bars(bars, sort=False)
        panel = as_panel(long, interval, max_ffill)
    interval, max_ffill = panel.interval, panel.max_ffill
    tsv = ts_ns(long["ts"])
    order = np.argsort(tsv, kind="stable")
    long = long.iloc[order].reset_index(drop=True)
    tsv = tsv[order]

    plist = panel.pairs if pairs is None else normalize_pairs(pairs)
    absent = [p for p in plist if p not in panel.pairs]
    if absent:
        raise NoDataError(
            f"no bars for {', '.join(absent)} in the data given; present: {', '.join(panel.pairs)}"
        )
    jcols = [panel.col(p) for p in plist]
    lb = lookback()
    ok_rows: np.ndarray = np.asarray(panel.observed[:, jcols].any(axis=1), dtype=bool)
    ok_rows[: min(lb, len(ok_rows))] = False
    if start is not None:
        ok_rows &= panel.ts >= to_utc(start).value
    if end is not None:
        ok_rows &= panel.ts <= to_utc(end).value
    cand = np.flatnonzero(ok_rows)
    if not len(cand):
        raise NoDataError(
            f"no bar with at least {lb} rows of history"
            + (f" in [{start}, {end}]" if start is not None or end is not None else ""),
            hint=f"give the audit more history: about {lb} bars (lookback) before the first "
            "bar to check",
        )
    rows = _pick_rows(cand, samples, seed)
    stamps = [pd.Timestamp(int(panel.ts[r]), tz="UTC") for r in rows]

    cols = columns()
    full: dict[str, pd.DataFrame] = {}
    scale: dict[str, np.ndarray] = {}
    for p in plist:
        f = build(panel, p, start=stamps[0])
        full[p] = f
        scale[p] = _column_scale(f.to_numpy())
    acc = _Acc(len(cols))
    n_cmp = 0
    total = len(rows)
    for i, (r, t) in enumerate(zip(rows, stamps, strict=True)):
        cut = long.iloc[: int(np.searchsorted(tsv, t.value, side="right"))]
        pc = Panel.from_bars(cut, interval=interval, max_ffill=max_ffill)
        for p, j in zip(plist, jcols, strict=True):
            if not np.isfinite(panel.close[r, j]):
                continue  # the pair has no bar (observed or filled) at t
            k = int(full[p].index.get_indexer(pd.DatetimeIndex([t]))[0])
            if k < 0:  # pragma: no cover - build returns every row with a close
                continue
            ref = full[p].iloc[k].to_numpy(dtype=np.float64)
            online, asof = at_array(pc, p, t)
            got: dict[str, np.ndarray] = {"at": online}
            if asof != t:  # the cut grid lost the bar: every column "differs"
                got["at"] = np.full(len(cols), np.inf)
            one = build(pc, p, start=t, end=t)
            got["build"] = (
                one.iloc[0].to_numpy(dtype=np.float64)
                if len(one) and one.index[0] == t
                else np.full(len(cols), np.inf)
            )
            acc.add(ref, got, scale[p], tol)
            n_cmp += 1
        if progress:
            progress(i + 1, total)

    bad = np.flatnonzero(acc.count > 0)
    cat = catalog().set_index("name")
    leaking = pd.DataFrame(
        {
            "column": [cols[j] for j in bad],
            "base": [cat.at[cols[j], "base"] for j in bad],
            "family": [cat.at[cols[j], "family"] for j in bad],
            "n_samples": acc.count[bad],
            "nan_mismatch": acc.nan_mismatch[bad],
            "max_abs_diff": acc.max_abs[bad],
            "max_rel_diff": acc.max_rel[bad],
            "paths": [",".join(sorted(acc.paths[j])) for j in bad],
        },
        columns=LEAK_COLUMNS,
    )
    return LookaheadReport(
        ok=not len(leaking),
        pairs=list(plist),
        samples=len(rows),
        leaking=leaking,
        seconds=time.perf_counter() - t0,
        timestamps=stamps,
        columns_checked=len(cols),
        comparisons=n_cmp,
        tol=tol,
    )
