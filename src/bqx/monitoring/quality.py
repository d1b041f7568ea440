"""Live quality from matured decisions, per pair and per model version.

Targets overlap (a 60-bar target, one decision a bar), so every figure carries its
overlap-aware standard error and effective sample size from :mod:`bqx.stats`. The R²-drop
rule (SPEC: critical when live R² is more than 0.05 below the test-set R²) fires only when
the drop is also statistically distinguishable from noise: the upper end of the live R²
interval (one-sided, ``level``) must lie below ``test_r2 - 0``, i.e. the drop is
significant, AND the point drop exceeds ``r2_drop``. A raw-difference rule fires on ~19 %
of days with no change (STATISTICS-NOTES).

Decisions with a null prediction (``insufficient_data``) are skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bqx.stats import Estimate, metric_estimates

#: Rolling windows (name -> length) over which live metrics are reported.
DEFAULT_WINDOWS: dict[str, pd.Timedelta] = {
    "1d": pd.Timedelta(days=1),
    "7d": pd.Timedelta(days=7),
}
R2_DROP = 0.05


def window_metrics(frame: pd.DataFrame, horizon: int | None, level: float = 0.95) -> dict[str, Any]:
    """Metrics (each an :class:`Estimate` dict) over matured rows of ``frame``."""
    f = frame[
        np.isfinite(frame["prediction"].astype(float))
        & np.isfinite(frame["realized_target"].astype(float))
    ]
    f = f.sort_values("asof_ts")
    lo = f["interval_lo"].astype(float).to_numpy() if "interval_lo" in f else None
    hi = f["interval_hi"].astype(float).to_numpy() if "interval_hi" in f else None
    if lo is not None and not np.isfinite(lo).any():
        lo = hi = None
    est = metric_estimates(
        f["realized_target"].astype(float).to_numpy(),
        f["prediction"].astype(float).to_numpy(),
        horizon=horizon,
        level=level,
        lo=lo,
        hi=hi,
    )
    return {"n": len(f), "metrics": {k: v.as_dict() for k, v in est.items()}}


#: Below this many effective samples a live R² is inconclusive (no verdict, no alert): an
#: hour of overlapping 60-bar targets is worth ~1-20 independent values, and R² over a window
#: whose target barely varies is dominated by that window's own variance.
MIN_N_EFF = 30.0


def r2_drop_verdict(
    live: Estimate,
    test_r2: float | None,
    *,
    drop: float = R2_DROP,
    level: float = 0.95,
    min_n_eff: float = MIN_N_EFF,
) -> dict[str, Any]:
    """Is live R² more than ``drop`` below the test-set R², and is the drop significant?

    ``significant``: the one-sided upper bound of live R² (normal, overlap-aware se) is
    below ``test_r2`` (the test figure is taken as known). ``alert``: both. With fewer than
    ``min_n_eff`` effective samples the verdict is ``inconclusive`` (no alert).
    """
    if test_r2 is None or not live.finite or not math.isfinite(test_r2):
        return {"drop": None, "z": None, "significant": False, "alert": False}
    if not (live.n_eff >= min_n_eff):
        return {
            "drop": float(test_r2) - live.value,
            "z": None,
            "significant": False,
            "alert": False,
            "inconclusive": f"n_eff {live.n_eff:.0f} < {min_n_eff:g}",
        }
    from scipy.special import ndtri  # = scipy.stats.norm.ppf (a ufunc, light to import)

    d = float(test_r2) - live.value
    z = d / live.se if live.se > 0 else float("inf")
    sig = bool(z > ndtri(level))
    return {"drop": d, "z": z, "significant": sig, "alert": bool(sig and d > drop)}


def quality_report(
    decisions: pd.DataFrame,
    *,
    now: Any = None,
    test_metrics: dict[str, dict[str, float]] | None = None,
    windows: dict[str, pd.Timedelta] | None = None,
    level: float = 0.95,
    r2_drop: float = R2_DROP,
) -> dict[str, Any]:
    """Live metrics per (pair, model_version, window) from a decision-log frame.

    ``decisions``: rows of :meth:`StateDB.read_decisions` (matured or not; unmatured and
    null-prediction rows are skipped). ``test_metrics``: ``{version: {"r2": ..., ...}}``,
    the version's test-set metrics. Windows end at ``now`` (default: the newest asof_ts).
    """
    windows = windows or DEFAULT_WINDOWS
    test_metrics = test_metrics or {}
    out: list[dict[str, Any]] = []
    if decisions.empty:
        return {"rows": out}
    d = decisions.copy()
    d["asof_ts"] = pd.to_datetime(d["asof_ts"], utc=True)
    d = d[d["prediction"].notna() & d["realized_target"].notna()]
    if d.empty:
        return {"rows": out}
    end = pd.Timestamp(now) if now is not None else d["asof_ts"].max()
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    for (pair, version), g in d.groupby(["pair", "model_version"], sort=True, dropna=False):
        horizon = int(g["horizon"].dropna().iloc[0]) if g["horizon"].notna().any() else None
        for wname, wlen in windows.items():
            w = g[(g["asof_ts"] > end - wlen) & (g["asof_ts"] <= end)]
            if w.empty:
                continue
            m = window_metrics(w, horizon, level)
            tm = test_metrics.get(str(version), {})
            verdict = r2_drop_verdict(
                Estimate.from_dict(m["metrics"]["r2"]), tm.get("r2"), drop=r2_drop, level=level
            )
            out.append(
                {
                    "pair": str(pair),
                    "model_version": None if version is None else str(version),
                    "window": wname,
                    "n": m["n"],
                    "metrics": m["metrics"],
                    "test": tm,
                    "r2_drop": verdict,
                }
            )
    return {"rows": out}
