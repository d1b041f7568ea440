"""Feature drift against a baseline frozen at training time.

Why frozen bins: bins rebuilt on reference + current data hide a volatility jump in
heavy-tailed returns; deciles of the *training segment*, frozen with the model version,
show it (STATISTICS-NOTES "Drift"). Severity comes from the smoothed KL divergence (and
PSI, reported beside it). Two-sample KS is reported but never alerts on its own: on
autocorrelated windows (a 60-bar rolling feature) it rejects in almost every window.

Units: KL and PSI in nats, Wasserstein in baseline standard deviations, shares in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import chdtrc, kolmogorov

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
        )


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def column_baseline(name: str, values: np.ndarray, bins: int = DEFAULT_BINS) -> ColumnBaseline:
    """Baseline of one column from its training-segment ``values`` (NaN = missing)."""
    v = np.asarray(values, float)
    n = len(v)
    fin = v[np.isfinite(v)]
    missing = 1.0 - len(fin) / n if n else 0.0
    if len(fin) == 0:
        nan = float("nan")
        return ColumnBaseline(name, [], [1.0], nan, nan, nan, nan, {}, missing, n)
    qs = np.quantile(fin, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(qs)  # ties (discrete features) collapse bins
    counts = np.bincount(np.searchsorted(edges, fin, side="right"), minlength=len(edges) + 1)
    pct = {f"p{p}": float(np.percentile(fin, p)) for p in (1, 5, 25, 50, 75, 95, 99)}
    ref = np.quantile(fin, (np.arange(REFERENCE_POINTS) + 0.5) / REFERENCE_POINTS)
    return ColumnBaseline(
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


def build_baseline(
    columns: dict[str, np.ndarray], bins: int = DEFAULT_BINS
) -> dict[str, ColumnBaseline]:
    """Baselines for many columns (features, ``prediction``, ``target``)."""
    return {k: column_baseline(k, v, bins) for k, v in columns.items()}


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
    kl_p: float = float("nan")  # p-value of KL against sampling noise (G-test on n_eff)

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
    a day of 1,440 bars may be worth only ~30 independent draws, and the sampling noise of
    KL on k bins is about (k-1) / (2 n_eff) - above the 0.1 warning threshold. A KL
    severity is therefore raised only when ``G = 2 n_eff KL`` is also significant against
    chi2(k-1) at ``alpha`` (n_eff from :func:`bqx.stats.effective_sample_size` with a
    Bartlett window of ``2 * corr_bars`` lags).
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
    n_eff = effective_sample_size(fin, horizon=corr_bars)
    kl_p = float(chdtrc(max(k - 1, 1), 2.0 * n_eff * kl))  # = scipy.stats.chi2.sf, a ufunc
    sev = severity_of(kl, warning, critical)
    if sev in ("warning", "critical") and kl_p >= alpha:
        sev = "ok"
    if mdelta > missing_critical:
        sev = "critical"
    return ColumnDrift(base.name, n, kl, psi, ks_stat, ks_p, w, miss, mdelta, oor, sev, n_eff, kl_p)


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
) -> dict[str, Any]:
    """Drift of every baselined column present in ``window`` (name -> values).

    Each column's KL gate is tested at ``family_alpha / m`` for the m columns compared
    (None: each at :data:`ALPHA`), so that the chance that *some* feature of an unchanged
    pair is flagged stays near ``family_alpha`` per pass.

    Returns ``{"columns": [...], "worst": {...}|None, "over_warning": int,
    "over_critical": int, "severity": str}`` - a JSON-ready dict. Columns of the
    baseline absent from the window are listed under ``"absent"``.
    """
    names = [name for name in baseline if name in window]
    alpha = family_alpha / max(len(names), 1) if family_alpha is not None else ALPHA
    cols = [
        column_drift(baseline[name], window[name], warning=warning, critical=critical, alpha=alpha)
        for name in names
    ]
    w = worst(cols)
    return {
        "columns": [c.as_dict() for c in cols],
        "worst": w.as_dict() if w else None,
        "over_warning": sum(c.severity in ("warning", "critical") for c in cols),
        "over_critical": sum(c.severity == "critical" for c in cols),
        "severity": w.severity if w else "insufficient",
        "absent": sorted(set(baseline) - set(window)),
    }
