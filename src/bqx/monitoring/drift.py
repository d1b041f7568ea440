"""Feature drift against a baseline frozen at training time.

Why frozen bins: bins rebuilt on reference + current data hide a volatility jump in
heavy-tailed returns; deciles of the *training segment*, frozen with the model version,
show it (STATISTICS-NOTES "Drift"). Severity comes from the smoothed KL divergence (and
PSI, reported beside it), gated by significance against KL's null distribution, which is
calibrated at baseline time on the training segment's own windows (no model of the
features' autocorrelation is assumed); a pair-level test of all features together catches
a change that moves many features a little; the market column (:data:`MARKET_VOL`, realised
volatility in return units) is tested for its level, which scale-free features cannot show.
Two-sample KS is reported but never alerts on
its own: on autocorrelated windows (a 60-bar rolling feature) it rejects in almost every
window.

Units: KL and PSI in nats, Wasserstein in baseline standard deviations, shares in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import chdtrc, kolmogorov, ndtr, stdtr, stdtrit

from bqx.stats import effective_sample_size

#: Default number of frozen quantile bins (deciles) and KL thresholds (SPEC section 7).
DEFAULT_BINS = 10
KL_WARNING = 0.1
KL_CRITICAL = 0.3
#: Additive smoothing of bin counts (per bin), so an empty bin does not give KL = inf.
SMOOTHING = 0.5
#: Reference sample kept in the baseline for KS / Wasserstein (evenly spaced quantiles).
REFERENCE_POINTS = 200
#: Significance level of the KL gate (see :func:`column_drift`) and the assumed
#: correlation length of served features in bars (the 60-bar rolling windows).
ALPHA = 0.001
CORR_BARS = 60
#: Family-wise significance per pair and pass: a pair's model reads 40-70 features, and
#: testing each at ``ALPHA`` let some feature of an unchanged pair warn within a day in
#: 3 of 6 simulated runs; :func:`drift_report` tests each of its m columns at
#: ``FAMILY_ALPHA / m`` (Bonferroni: valid whatever the features' correlation).
FAMILY_ALPHA = 0.01
#: Significance of the pair-level test per pass (split over its two windows). Passes run
#: every few minutes over sliding windows, so a day holds ~10 independent looks: at 0.01 an
#: unchanged pair alarmed on 18 % of simulated days (a pass every 30 bars), at 0.0002 on
#: 1.5 % (benchmarks/bench_drift_far.py; the trade-off with detection is in
#: docs/performance.md).
PAIR_ALPHA = 0.0002
#: Window lengths (bars) whose null distribution of KL is calibrated on the training segment
#: at baseline time (:func:`build_baseline`): the default monitoring window (the last 24 h of
#: served bars) and a short one (the last 4 h) that sees an abrupt change within one pass.
NULL_WINDOWS = (1440, 240)
#: The short window :func:`drift_report` tests beside the whole window (its last values).
SHORT_BARS = 240
#: Training windows per calibrated length are taken every ``W // NULL_STRIDE_DIV`` bars.
NULL_STRIDE_DIV = 24
#: A calibration needs at least this many training windows (and 4 x W training rows).
NULL_MIN_WINDOWS = 20
#: Floor of KL before its log is taken (a window can match the training shares exactly).
_KL_FLOOR = 1e-9
#: The market column monitored beside every version's selected features: the served bar's
#: realised volatility, the pipeline feature ``rvol_60`` (population std of the last 60
#: one-bar log returns, bars <= t; also the feature conformal intervals scale by, so serving
#: computes it for every model). It is in return units, not scale-free: a volatility regime
#: x k moves its log by ln k, where most selected features (normalised returns, slopes, R²,
#: shares) do not move at all. Baselined from the training rows like a feature, and tested
#: besides for its *level* (:func:`level_test`).
MARKET_VOL = "rvol_60"
#: Windows (bars) whose null of the window mean of ln(value) is calibrated for the level test
#: (one day: a whole day holds the intraday session curve once, so its mean is season-free).
LEVEL_WINDOWS = (1440,)
#: Two-sided significance of the market level test per pass (:func:`drift_report`). On
#: 6,048 unchanged simulated passes |z| never exceeded 3.01 (threshold here: 3.48); at 0.01
#: 8.7 % of unchanged pair-days alarmed, from 0.002 down none was added to the features' own
#: (benchmarks/bench_drift_far.py; the trade-off with detection in docs/performance.md).
MARKET_ALPHA = 0.0005
#: Floor of a level column before its log is taken (a flat stretch has zero volatility).
_LEVEL_FLOOR = 1e-12
#: The second market column: the pair's realised volatility over the market's,
#: ``rvol_60 / exp(mean over the other pairs of (ln rvol_60 - its training mean))`` at the
#: same bar (:func:`relative_vol`). What all pairs share - the volatility regime, the
#: session curve - cancels, so its day-to-day spread is about half of ``rvol_60``'s on the
#: simulator and a pair-specific x1.9 reaches the level test within a day in 94 % of cases
#: against 28 % (``benchmarks/bench_drift_relative.py``). A market-wide change leaves it
#: where it was (every pair moves alike): the level test of :data:`MARKET_VOL` is for that.
#: Baselined when training has the other pairs' rvol_60 (the feature store), computed in
#: the pass from the captured rvol_60 of every pair served at the same bar.
MARKET_REL = "rvol_60_rel"
#: :func:`relative_vol` needs at least this share of the other pairs at a bar (fewer: NaN).
REL_MIN_SHARE = 0.75


@dataclass(frozen=True)
class ColumnBaseline:
    """One column's training distribution: frozen inner bin edges and summary figures."""

    name: str
    edges: list[float]  # inner edges (len = bins - 1); outer bins are open-ended
    shares: list[float]  # training share per bin (len = bins)
    mean: float
    std: float
    min: float
    max: float
    percentiles: dict[str, float]
    missing_rate: float
    n: int
    reference: list[float] = field(default_factory=list)
    #: Null distribution of ln KL of a window of W consecutive training bars against this
    #: baseline, per calibrated W: ``{"1440": [mean, sd, windows]}`` (empty: a baseline
    #: made before the calibration existed - drift falls back to the Bartlett gate).
    null: dict[str, list[float]] = field(default_factory=dict)
    #: Correlation of this column's standardised ln KL with the other columns' over the
    #: same training windows, per W: ``{"1440": {name: r}}`` (for the pair-level test).
    null_corr: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Null of the window mean of ln(value) over W consecutive training bars, per W:
    #: ``{"1440": [mean, sd, windows]}`` - only for a market column (:data:`MARKET_VOL`);
    #: empty for features and for baselines made before the level test existed.
    level: dict[str, list[float]] = field(default_factory=dict)
    #: Only for :data:`MARKET_REL`: the training mean of ln rvol_60 of every other pair
    #: (the centres the pass subtracts, so its market level means what training's meant).
    centers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "edges": self.edges,
            "shares": self.shares,
            "mean": _f(self.mean),
            "std": _f(self.std),
            "min": _f(self.min),
            "max": _f(self.max),
            "percentiles": {k: _f(v) for k, v in self.percentiles.items()},
            "missing_rate": self.missing_rate,
            "n": self.n,
            "reference": self.reference,
            "null": self.null,
            "null_corr": self.null_corr,
            "level": self.level,
            "centers": self.centers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnBaseline:
        def g(k: str) -> float:
            v = d.get(k)
            return float("nan") if v is None else float(v)

        return cls(
            name=str(d["name"]),
            edges=[float(x) for x in d["edges"]],
            shares=[float(x) for x in d["shares"]],
            mean=g("mean"),
            std=g("std"),
            min=g("min"),
            max=g("max"),
            percentiles={
                k: (float("nan") if v is None else float(v))
                for k, v in d.get("percentiles", {}).items()
            },
            missing_rate=float(d.get("missing_rate", 0.0)),
            n=int(d.get("n", 0)),
            reference=[float(x) for x in d.get("reference", [])],
            null={str(k): [float(x) for x in v] for k, v in (d.get("null") or {}).items()},
            null_corr={
                str(k): {str(n): float(r) for n, r in v.items()}
                for k, v in (d.get("null_corr") or {}).items()
            },
            level={str(k): [float(x) for x in v] for k, v in (d.get("level") or {}).items()},
            centers={str(k): float(v) for k, v in (d.get("centers") or {}).items()},
        )


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def column_baseline(
    name: str, values: np.ndarray, bins: int = DEFAULT_BINS, *, level: bool = False
) -> ColumnBaseline:
    """Baseline of one column from its training-segment ``values`` (NaN = missing), in time
    order: the null distribution of KL is calibrated on its consecutive windows (and, with
    ``level``, the null of the window mean of ln(value): :func:`level_null`)."""
    return _column_baseline(name, values, bins, level)[0]


def relative_vol(
    own: np.ndarray, others: np.ndarray, centers: np.ndarray, min_share: float = REL_MIN_SHARE
) -> np.ndarray:
    """:data:`MARKET_REL` per bar: ``own`` (the pair's rvol_60, n values) over
    ``exp(mean_k(ln others[:, k] - centers[k]))`` (``others``: n x k, the other pairs'
    rvol_60 at the same bars, NaN where absent). NaN where fewer than ``min_share`` of the
    k others are there, or ``own`` is not a positive number."""
    own = np.asarray(own, float)
    o = np.asarray(others, float).reshape(len(own), -1)
    k = o.shape[1]
    ok = np.isfinite(o) & (o > 0)
    dev = np.where(ok, np.log(np.where(ok, o, 1.0)) - np.asarray(centers, float), 0.0)
    cnt = ok.sum(axis=1)
    mkt = dev.sum(axis=1) / np.maximum(cnt, 1)
    good = (cnt >= max(1, math.ceil(min_share * k))) & np.isfinite(own) & (own > 0)
    return np.where(good, own / np.exp(mkt), np.nan)


def relative_column(own: np.ndarray, others: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """:data:`MARKET_REL` over training rows and its centres: each other pair's mean of
    ln rvol_60 over these rows (``others``: pair -> rvol_60 at the same rows)."""
    names = sorted(others)
    o = np.column_stack([np.asarray(others[p], float) for p in names]) if names else None
    if o is None:
        return np.full(len(own), np.nan), {}
    ok = np.isfinite(o) & (o > 0)
    lo = np.where(ok, np.log(np.where(ok, o, 1.0)), 0.0)
    cen = lo.sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
    keep = ok.sum(axis=0) > 0
    centers = {p: float(c) for p, c, k in zip(names, cen, keep, strict=True) if k}
    cols = [i for i, k in enumerate(keep) if k]
    return relative_vol(own, o[:, cols], cen[cols]), centers


def level_window_means(values: np.ndarray, w: int) -> np.ndarray:
    """Means of ln(value) over the windows of ``w`` consecutive values ending every
    ``w // NULL_STRIDE_DIV`` values (windows with fewer than ``w / 2`` finite values left
    out): the training sample of the level test's null (:func:`level_null`)."""
    v = np.asarray(values, float)
    fin = np.isfinite(v)
    lv = np.where(fin, np.log(np.maximum(np.where(fin, v, 1.0), _LEVEL_FLOOR)), 0.0)
    cs = np.concatenate([[0.0], np.cumsum(lv)])
    cn = np.concatenate([[0], np.cumsum(fin)])
    ends = np.arange(w, len(v) + 1, max(w // NULL_STRIDE_DIV, 1))
    cnt = cn[ends] - cn[ends - w]
    ok = cnt >= w / 2
    return np.asarray((cs[ends] - cs[ends - w])[ok] / cnt[ok], float)


def level_null(
    values: np.ndarray, windows: tuple[int, ...] = LEVEL_WINDOWS
) -> dict[str, list[float]]:
    """``{str(W): [mean, sd, windows]}`` of the mean of ln(value) over windows of W
    consecutive training values (:func:`level_window_means`: a new window every W/24
    values, as for KL's null). The training segment's own spread of day-long volatility
    levels - calm days, turbulent stretches - is the null: no model of it is assumed. A W
    needs 4 x W values and :data:`NULL_MIN_WINDOWS` windows."""
    out: dict[str, list[float]] = {}
    for w in windows:
        if len(values) < 4 * w:
            continue
        m = level_window_means(values, w)
        if len(m) < NULL_MIN_WINDOWS:
            continue
        sd = float(m.std(ddof=1))
        if sd > 0:
            out[str(w)] = [float(m.mean()), sd, float(len(m))]
    return out


def level_test(base: ColumnBaseline, values: np.ndarray) -> dict[str, Any] | None:
    """Is the mean of ln(value) over the window (the last W values, W the longest level
    null calibrated with W <= the window's finite values) within the training segment's
    spread of W-bar means? ``z = (mean - null mean) / null sd``, two-sided ``p``. None when
    the baseline has no level null (a feature, or an old baseline) or the window is short."""
    v = np.asarray(values, float)
    best: tuple[int, float, float] | None = None
    nfin = int(np.isfinite(v).sum())
    for key, cal in base.level.items():
        w = int(key)
        if w <= nfin and len(cal) >= 2 and cal[1] > 0 and (best is None or w > best[0]):
            best = (w, float(cal[0]), float(cal[1]))
    if best is None:
        return None
    w, mu, sd = best
    x = v[-w:]
    x = x[np.isfinite(x)]
    if len(x) < w / 2:
        return None
    mean = float(np.mean(np.log(np.maximum(x, _LEVEL_FLOOR))))
    z = (mean - mu) / sd
    n_days, df, scale = _level_predictive(base.level[str(w)], w)
    return {
        "column": base.name,
        "window_bars": w,
        "log_mean": mean,
        "null_mean": mu,
        "null_sd": sd,
        "ratio": math.exp(mean - mu),  # the window's level over the training level
        "z": z,
        "p": float(2.0 * stdtr(df, -abs(z) / scale)),
        "training_windows": n_days,  # non-overlapping W-bar windows the null was made from
        "df": df,
    }


def _level_predictive(cal: list[float], w: int) -> tuple[float, float, float]:
    """(N, degrees of freedom, scale) of the level test's predictive distribution.

    The null's mean and sd are estimates from the training segment's N non-overlapping
    W-bar windows (its overlapping windows, one every W/24 bars, hold no more), so a new
    window's level, standardised by them, follows a Student t with N - 1 degrees of freedom
    scaled by sqrt(1 + 1/N) - the prediction interval of a new observation - not a normal.
    With 25 training days the normal threshold (3.48 at the default level) let 4.3 % of
    unchanged pair-days alarm on the simulator, with 100 days 0.8 %; the predictive one
    keeps short baselines from crying wolf and converges to the normal as N grows
    (``benchmarks/bench_drift_relative.py``)."""
    windows = cal[2] if len(cal) > 2 else float(NULL_MIN_WINDOWS)
    n = max(1.0 + (windows - 1.0) / NULL_STRIDE_DIV, 2.0)
    return n, n - 1.0, math.sqrt(1.0 + 1.0 / n)


def level_z_threshold(test: dict[str, Any], alpha: float) -> float:
    """The |z| at which a level test (:func:`level_test`'s result) is significant at the
    two-sided level ``alpha``."""
    n = float(test["training_windows"])
    return float(math.sqrt(1.0 + 1.0 / n) * stdtrit(test["df"], 1.0 - alpha / 2.0))


def _column_baseline(
    name: str, values: np.ndarray, bins: int, level: bool = False
) -> tuple[ColumnBaseline, dict[int, np.ndarray]]:
    v = np.asarray(values, float)
    n = len(v)
    fin = v[np.isfinite(v)]
    missing = 1.0 - len(fin) / n if n else 0.0
    if len(fin) == 0:
        nan = float("nan")
        return ColumnBaseline(name, [], [1.0], nan, nan, nan, nan, {}, missing, n), {}
    qs = np.quantile(fin, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(qs)  # ties (discrete features) collapse bins
    counts = np.bincount(np.searchsorted(edges, fin, side="right"), minlength=len(edges) + 1)
    pct = {f"p{p}": float(np.percentile(fin, p)) for p in (1, 5, 25, 50, 75, 95, 99)}
    ref = np.quantile(fin, (np.arange(REFERENCE_POINTS) + 0.5) / REFERENCE_POINTS)
    base = ColumnBaseline(
        name=name,
        edges=[float(e) for e in edges],
        shares=[float(c) / len(fin) for c in counts],
        mean=float(fin.mean()),
        std=float(fin.std(ddof=1)) if len(fin) > 1 else 0.0,
        min=float(fin.min()),
        max=float(fin.max()),
        percentiles=pct,
        missing_rate=missing,
        n=n,
        reference=[float(x) for x in ref],
    )
    null: dict[str, list[float]] = {}
    zs: dict[int, np.ndarray] = {}
    if len(base.shares) > 1:
        for w in NULL_WINDOWS:
            if n < 4 * w:
                continue
            lk = window_log_kl(base, v, w, np.arange(w, n + 1, max(w // NULL_STRIDE_DIV, 1)))
            ok = np.isfinite(lk)
            if ok.sum() < NULL_MIN_WINDOWS:
                continue
            mu, sd = float(lk[ok].mean()), float(lk[ok].std(ddof=1))
            if not sd > 0:
                continue
            null[str(w)] = [mu, sd, float(ok.sum())]
            zs[w] = np.where(ok, (lk - mu) / sd, 0.0)
    lvl = level_null(v) if level else {}
    return ColumnBaseline(**{**base.__dict__, "null": null, "level": lvl}), zs


def _smoothed_shares(base: ColumnBaseline) -> np.ndarray:
    p = np.asarray(base.shares, float) * base.n
    return (p + SMOOTHING) / (p.sum() + SMOOTHING * len(p))


def window_log_kl(base: ColumnBaseline, values: np.ndarray, w: int, ends: np.ndarray) -> np.ndarray:
    """ln KL (smoothed, as :func:`column_drift` computes it) of the windows
    ``values[e - w : e]`` for every ``e`` in ``ends``, from one cumulative sum of the
    one-hot bin indicators; NaN for a window with fewer than :data:`MIN_WINDOW` finite
    values. Used at baseline time to calibrate KL's null distribution on the training
    segment itself (overlapping windows: the autocorrelation of the real features is in
    the calibration, no model of it is assumed)."""
    v = np.asarray(values, float)
    k = len(base.shares)
    fin = np.isfinite(v)
    idx = np.searchsorted(np.asarray(base.edges, float), np.where(fin, v, 0.0), side="right")
    oh = np.zeros((len(v) + 1, k))
    oh[1:][np.flatnonzero(fin), idx[fin]] = 1.0
    cs = np.cumsum(oh, axis=0)
    c = cs[ends] - cs[ends - w]
    tot = c.sum(axis=1)
    q = (c + SMOOTHING) / (tot[:, None] + SMOOTHING * k)
    p = _smoothed_shares(base)
    kl = np.sum(q * np.log(q / p), axis=1)
    out = np.log(np.maximum(kl, _KL_FLOOR))
    out[tot < MIN_WINDOW] = np.nan
    return out


def build_baseline(
    columns: dict[str, np.ndarray],
    bins: int = DEFAULT_BINS,
    *,
    level_columns: tuple[str, ...] = (MARKET_VOL, MARKET_REL),
) -> dict[str, ColumnBaseline]:
    """Baselines for many columns (features, ``prediction``, ``target``, the market column
    :data:`MARKET_VOL`), each in time order. Columns of equal length are rows of one frame:
    the correlation of their standardised ln KL over the same training windows is stored too
    (``null_corr``), so the pair-level test of :func:`drift_report` knows how much the
    features move together on unchanged data (a calm day moves many features at once).
    Columns named in ``level_columns`` also get the null of their window mean of ln(value)
    (``level``, for :func:`level_test`)."""
    built = {k: _column_baseline(k, v, bins, k in level_columns) for k, v in columns.items()}
    out = {k: b for k, (b, _) in built.items()}
    for w in NULL_WINDOWS:
        by_len: dict[tuple[int, int], list[str]] = {}
        for k, (_, zs) in built.items():
            if w in zs:
                by_len.setdefault((len(columns[k]), len(zs[w])), []).append(k)
        for names in by_len.values():
            z = np.vstack([built[k][1][w] for k in names])
            r = np.corrcoef(z) if len(names) > 1 else np.ones((1, 1))
            r = np.nan_to_num(np.atleast_2d(r), nan=1.0)
            for i, k in enumerate(names):
                row = {names[j]: round(float(r[i, j]), 4) for j in range(len(names)) if j != i}
                out[k] = ColumnBaseline(
                    **{**out[k].__dict__, "null_corr": {**out[k].null_corr, str(w): row}}
                )
    return out


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column's window against its baseline."""

    name: str
    n: int
    kl: float
    psi: float
    ks: float
    ks_p: float
    wasserstein: float  # in baseline standard deviations
    missing_rate: float
    missing_delta: float
    out_of_range: float  # share of window values outside the training [min, max]
    severity: str  # ok | warning | critical | insufficient
    n_eff: float = float("nan")  # independent-sample worth of the window (autocorrelation)
    kl_p: float = float("nan")  # p-value of KL against sampling noise (see column_drift)
    z: float = float("nan")  # (ln KL - null mean) / null sd, training-calibrated gate only
    gate: str = "bartlett"  # "calibrated" (training null of W bars) or "bartlett" (fallback)
    null_window: int = 0  # W of the calibration used (0: none)
    kl_short: float = float("nan")  # KL of the last SHORT_BARS values (drift_report)
    z_short: float = float("nan")
    kl_short_p: float = float("nan")

    def with_gate(self, z: float, gate: str, null_window: int) -> ColumnDrift:
        return replace(self, z=z, gate=gate, null_window=null_window)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "kl": _f(self.kl),
            "psi": _f(self.psi),
            "ks": _f(self.ks),
            "ks_p": _f(self.ks_p),
            "wasserstein": _f(self.wasserstein),
            "missing_rate": self.missing_rate,
            "missing_delta": self.missing_delta,
            "out_of_range": self.out_of_range,
            "severity": self.severity,
            "n_eff": _f(self.n_eff),
            "kl_p": _f(self.kl_p),
            "z": _f(self.z),
            "gate": self.gate,
            "null_window": self.null_window,
            "kl_short": _f(self.kl_short),
            "z_short": _f(self.z_short),
            "kl_short_p": _f(self.kl_short_p),
        }


def severity_of(kl: float, warning: float = KL_WARNING, critical: float = KL_CRITICAL) -> str:
    if not math.isfinite(kl):
        return "insufficient"
    if kl > critical:
        return "critical"
    if kl > warning:
        return "warning"
    return "ok"


#: Fewer finite values than this in a window: no verdict (severity ``insufficient``).
MIN_WINDOW = 30


def column_drift(
    base: ColumnBaseline,
    values: np.ndarray,
    *,
    warning: float = KL_WARNING,
    critical: float = KL_CRITICAL,
    missing_critical: float = 0.5,
    alpha: float = ALPHA,
    corr_bars: int = CORR_BARS,
) -> ColumnDrift:
    """Compare a window of served values with the frozen baseline.

    KL(window || training) over the frozen bins with ``SMOOTHING`` added to every bin
    count; PSI = sum (q - p) ln(q / p) on the same smoothed shares. A missing rate that
    rises by more than ``missing_critical`` is critical whatever the KL.

    Significance gate: served features are strongly autocorrelated (rolling windows), so
    a day of 1,440 bars may be worth only a few independent draws and KL's sampling noise
    is often above the 0.1 warning threshold (for a 630-bar regression feature its mean on
    unchanged days is ~0.5). A KL severity is therefore raised only when KL is also
    significant at ``alpha`` against its null. The null is the training segment's own
    distribution of ln KL over windows of W consecutive bars (stored in the baseline by
    :func:`build_baseline`, W = the longest calibrated length <= the window's values):
    ``z = (ln KL - mean) / sd``, ``kl_p = P(N(0,1) > z)``; ``n_eff`` reports the sample size
    whose chi2 noise equals the null's mean KL. A baseline without a calibration (made
    before it existed) falls back to ``G = 2 n_eff KL`` against chi2(k-1) with n_eff from
    :func:`bqx.stats.effective_sample_size` (Bartlett window of ``2 * corr_bars`` lags).
    """
    v = np.asarray(values, float)
    n = len(v)
    fin = v[np.isfinite(v)]
    miss = 1.0 - len(fin) / n if n else 0.0
    mdelta = miss - base.missing_rate
    nan = float("nan")
    if len(fin) < MIN_WINDOW or not base.shares:
        sev = "critical" if n >= MIN_WINDOW and mdelta > missing_critical else "insufficient"
        return ColumnDrift(base.name, n, nan, nan, nan, nan, nan, miss, mdelta, 0.0, sev)
    edges = np.asarray(base.edges, float)
    k = len(base.shares)
    counts = np.bincount(np.searchsorted(edges, fin, side="right"), minlength=k).astype(float)
    q = (counts + SMOOTHING) / (counts.sum() + SMOOTHING * k)
    p = np.asarray(base.shares, float) * base.n
    p = (p + SMOOTHING) / (p.sum() + SMOOTHING * k)
    kl = float(np.sum(q * np.log(q / p)))
    psi = float(np.sum((q - p) * np.log(q / p)))
    ref = np.asarray(base.reference, float)
    if len(ref):
        ks_stat, ks_p, w = ks_wasserstein(fin, ref)
        w = w / base.std if base.std > 0 else nan
    else:
        ks_stat = ks_p = w = nan
    oor = float(np.mean((fin < base.min) | (fin > base.max)))
    cal = null_calibration(base, len(fin))
    z = nan
    if cal is not None:  # the training segment's own null of KL for W-bar windows
        wcal, mu, sd = cal
        z = (math.log(max(kl, _KL_FLOOR)) - mu) / sd
        kl_p = float(ndtr(-z))
        # the sample size whose chi2 noise (k-1)/(2 n) equals the null's mean KL (lognormal)
        n_eff = (k - 1) / (2.0 * math.exp(mu + sd * sd / 2.0))
    else:  # a baseline without calibration (made before it existed): Bartlett n_eff
        wcal = 0
        n_eff = effective_sample_size(fin, horizon=corr_bars)
        kl_p = float(chdtrc(max(k - 1, 1), 2.0 * n_eff * kl))  # = scipy.stats.chi2.sf
    sev = severity_of(kl, warning, critical)
    if sev in ("warning", "critical") and kl_p >= alpha:
        sev = "ok"
    if mdelta > missing_critical:
        sev = "critical"
    gate = "calibrated" if cal is not None else "bartlett"
    return ColumnDrift(
        base.name, n, kl, psi, ks_stat, ks_p, w, miss, mdelta, oor, sev, n_eff, kl_p
    ).with_gate(z, gate, wcal)


def null_calibration(base: ColumnBaseline, n: int) -> tuple[int, float, float] | None:
    """``(W, mean, sd)`` of the null ln KL calibrated for the longest W <= ``n`` (a longer
    window has less sampling noise, so the shorter W's null is the conservative one), None
    when the baseline has none (an old baseline, or too short a training segment)."""
    best: tuple[int, float, float] | None = None
    for key, v in base.null.items():
        w = int(key)
        if w <= n and len(v) >= 2 and v[1] > 0 and (best is None or w > best[0]):
            best = (w, float(v[0]), float(v[1]))
    return best


def short_window_kl(
    base: ColumnBaseline, values: np.ndarray, short: int = SHORT_BARS
) -> tuple[float, float, float]:
    """``(KL, z, p)`` of the last ``short`` values against the baseline, gated by the null
    calibrated for W = ``short`` (NaN when the baseline has no such calibration)."""
    nan = float("nan")
    cal = base.null.get(str(short))
    v = np.asarray(values, float)[-short:]
    fin = v[np.isfinite(v)]
    if cal is None or len(fin) < MIN_WINDOW or len(base.shares) < 2 or not cal[1] > 0:
        return nan, nan, nan
    k = len(base.shares)
    counts = np.bincount(
        np.searchsorted(np.asarray(base.edges, float), fin, side="right"), minlength=k
    ).astype(float)
    q = (counts + SMOOTHING) / (counts.sum() + SMOOTHING * k)
    p = _smoothed_shares(base)
    kl = float(np.sum(q * np.log(q / p)))
    z = (math.log(max(kl, _KL_FLOOR)) - cal[0]) / cal[1]
    return kl, z, float(ndtr(-z))


def ks_wasserstein(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Two-sample KS statistic with its asymptotic p-value (Kolmogorov distribution of
    ``sqrt(n m / (n + m)) D``) and the 1-Wasserstein distance, from one merge of the
    sorted samples. Same statistic and distance as ``scipy.stats.ks_2samp`` and
    ``wasserstein_distance``; done here because the scipy calls cost ~1 ms a column in
    argument handling (and the exact KS p-value more), i.e. seconds for the 1,960
    columns of a 28-pair pass. KS is reported only (it never sets the severity)."""
    xs, ys = np.sort(x), np.sort(y)
    n, m = len(xs), len(ys)
    allv = np.concatenate([xs, ys])
    allv.sort(kind="mergesort")
    cx = np.searchsorted(xs, allv, side="right") / n
    cy = np.searchsorted(ys, allv, side="right") / m
    d = float(np.max(np.abs(cx - cy)))
    p = float(min(1.0, kolmogorov(np.sqrt(n * m / (n + m)) * d)))
    w = float(np.sum(np.abs(cx[:-1] - cy[:-1]) * np.diff(allv)))
    return d, p, w


_RANK = {"insufficient": -1, "ok": 0, "warning": 1, "critical": 2}


def worst(drifts: list[ColumnDrift]) -> ColumnDrift | None:
    """The column with the highest severity, then the highest KL."""
    if not drifts:
        return None
    return max(
        drifts,
        key=lambda d: (_RANK[d.severity], d.kl if math.isfinite(d.kl) else -1.0),
    )


def drift_report(
    baseline: dict[str, ColumnBaseline],
    window: dict[str, np.ndarray],
    *,
    warning: float = KL_WARNING,
    critical: float = KL_CRITICAL,
    family_alpha: float | None = FAMILY_ALPHA,
    short_bars: int | None = SHORT_BARS,
    pair_alpha: float | None = PAIR_ALPHA,
    market_alpha: float | None = MARKET_ALPHA,
) -> dict[str, Any]:
    """Drift of every baselined column present in ``window`` (name -> values in time
    order, one per served bar).

    Per column, two windows: the whole ``window`` (the pass's last 24 h) and its last
    ``short_bars`` values (an abrupt change fills a short window first). Each KL severity
    (``warning`` / ``critical`` thresholds, SPEC) counts only when KL is also significant
    against its null at ``family_alpha / (m * windows)`` for the m columns compared
    (Bonferroni: the chance that *some* feature of an unchanged pair is flagged stays near
    ``family_alpha`` per pass; None: each at :data:`ALPHA`, no short window). The null is
    the training segment's own distribution of ln KL over windows of the same length
    (stored in the baseline); a baseline without it falls back to the Bartlett n_eff gate
    (``"calibration"`` says which).

    Pair-level test: a change of the market (a volatility regime, a level shift upstream)
    moves many features a little rather than one a lot. The mean standardised ln KL of the
    m columns, scaled by its null standard deviation (from the columns' correlation over the
    training windows, ``null_corr``), is tested at ``pair_alpha`` split over the window
    lengths (None: no pair test); when significant, the pair's severity is ``critical``
    (``"pair_test"`` gives z and p).

    Market level test: a column whose baseline has a level null (the market column
    :data:`MARKET_VOL`, realised volatility in return units) is also tested for the level of
    ln(value) over the window against the training segment's spread of day levels
    (:func:`level_test`: a predictive Student t, so a baseline of few training days is not
    over-trusted), two-sided at ``market_alpha`` (None: not tested); significant ->
    that column and the pair are ``critical`` (``"market"`` gives the level ratio, z and p).
    A volatility regime that leaves the scale-free features' distributions inside their
    training range moves this level by ln k. Baselines without the column (made before it
    existed) are tested as before, without it.

    Returns ``{"columns": [...], "worst": {...}|None, "over_warning": int,
    "over_critical": int, "severity": str, "pair_test": {...}, "market": {...},
    "calibration": str}`` - a JSON-ready dict. Columns of the baseline absent from the window are listed under
    ``"absent"``.
    """
    names = [name for name in baseline if name in window]
    m = max(len(names), 1)
    use_short = (
        family_alpha is not None
        and short_bars is not None
        and any(str(short_bars) in baseline[n].null for n in names)
    )  # an old baseline (no calibration): exactly the gate as before, no short window
    nwin = 2 if use_short else 1
    alpha = family_alpha / (m * nwin) if family_alpha is not None else ALPHA
    cols = []
    market: dict[str, Any] = {}
    for name in names:
        b, v = baseline[name], window[name]
        c = column_drift(b, v, warning=warning, critical=critical, alpha=alpha)
        if use_short and short_bars is not None and len(v) >= 2 * short_bars:
            kl_s, z_s, p_s = short_window_kl(b, v, short_bars)
            sev_s = severity_of(kl_s, warning, critical)
            if sev_s in ("warning", "critical") and not p_s < alpha:
                sev_s = "ok"
            sev = c.severity if _RANK[c.severity] >= _RANK.get(sev_s, -1) else sev_s
            c = replace(c, kl_short=kl_s, z_short=z_s, kl_short_p=p_s, severity=sev)
        if market_alpha is not None and b.level:
            lt = level_test(b, v)
            if lt is not None:
                lt.update(
                    alpha=market_alpha,
                    z_threshold=level_z_threshold(lt, market_alpha),
                    significant=bool(lt["p"] < market_alpha),
                    kl_severity=c.severity,  # the column's severity from KL alone
                )
                market[name] = lt
                if lt["significant"]:
                    c = replace(c, severity="critical")
        cols.append(c)
    w = worst(cols)
    severity = w.severity if w else "insufficient"
    pair_test: dict[str, Any] = {}
    if pair_alpha is not None:
        tests = [("whole", [(c.name, c.z, c.null_window) for c in cols])]
        if use_short:
            tests.append(("short", [(c.name, c.z_short, short_bars or 0) for c in cols]))
        for label, zs in tests:
            res = _pair_test(baseline, zs, pair_alpha / len(tests))
            if res is not None:
                pair_test[label] = res
                if res["significant"] and _RANK[severity] < _RANK["critical"]:
                    severity = "critical"
    gates = {c.gate for c in cols if math.isfinite(c.kl)}
    calibration = (
        "training null"
        if gates == {"calibrated"}
        else "bartlett fallback (baseline without a null calibration: rebuild it with "
        "`bqx monitor baseline PAIR VERSION`)"
        if gates == {"bartlett"}
        else "mixed"
        if gates
        else "none"
    )
    return {
        "columns": [c.as_dict() for c in cols],
        "worst": w.as_dict() if w else None,
        "over_warning": sum(c.severity in ("warning", "critical") for c in cols),
        "over_critical": sum(c.severity == "critical" for c in cols),
        "severity": severity,
        "pair_test": pair_test,
        "market": market,
        "calibration": calibration,
        "absent": sorted(set(baseline) - set(window)),
    }


#: The pair-level test needs at least this many calibrated columns (with fewer it is the
#: per-column test again).
PAIR_TEST_MIN_COLUMNS = 3


def _pair_test(
    baseline: dict[str, ColumnBaseline], zs: list[tuple[str, float, int]], alpha: float
) -> dict[str, Any] | None:
    """Mean standardised ln KL of the columns calibrated for the same W, divided by its null
    sd ``sqrt(sum_ij r_ij) / m`` (r from the training windows; a pair of columns without a
    stored r counts as r = 1, the conservative choice)."""
    by_w: dict[int, list[tuple[str, float]]] = {}
    for name, z, w in zs:
        if w and math.isfinite(z):
            by_w.setdefault(w, []).append((name, z))
    if not by_w:
        return None
    w, items = max(by_w.items(), key=lambda kv: len(kv[1]))
    if len(items) < PAIR_TEST_MIN_COLUMNS:
        return None
    names = [n for n, _ in items]
    zv = np.array([v for _, v in items])
    key = str(w)
    r = np.ones((len(names), len(names)))
    for i, a in enumerate(names):
        row = baseline[a].null_corr.get(key, {})
        for j, b in enumerate(names):
            if i != j:
                r[i, j] = row.get(b, 1.0)
    var = float(r.sum()) / len(names) ** 2
    zp = float(zv.mean() / math.sqrt(var)) if var > 0 else float("nan")
    p = float(ndtr(-zp)) if math.isfinite(zp) else float("nan")
    return {
        "window_bars": w,
        "columns": len(names),
        "mean_z": float(zv.mean()),
        "z": _f(zp),
        "p": _f(p),
        "alpha": alpha,
        "significant": bool(p < alpha),
    }
