"""Live model quality from matured decisions, per pair AND model version.

Rolling windows (default 1 d and 7 d of served bars, by ``asof_ts``) of decisions with a
prediction and a finite realised target (see :mod:`bqx.monitoring.mature`). Decisions of one
version on the same bar are one observation (repeated requests are not new evidence).
R², MAE, RMSE, directional accuracy and interval coverage come with overlap-aware (HAC)
uncertainty from :func:`bqx.stats.metric_estimates` (targets overlap by ``horizon`` bars).

Versions never mix, so shadow/canary arms (``extra.arm``) of a rollout are compared
separately. A version's live R² is compared with its test R² (``reference``): a drop is
``critical`` when it exceeds ``max_r2_drop`` (0.05) AND the live R² upper confidence bound
is below the test R² (statistically distinguishable, one-sided at ``level``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bqx.stats import metric_estimates

if TYPE_CHECKING:
    from bqx.state import StateDB

DEFAULT_WINDOWS: tuple[str, ...] = ("1D", "7D")


def version_quality(dec: pd.DataFrame, horizon: int | None, level: float = 0.95) -> dict[str, Any]:
    """Metrics (``Estimate.as_dict``) of one version's matured decisions, in time order."""
    d = dec.dropna(subset=["prediction", "realized_target"])
    d = d[np.isfinite(d["realized_target"].to_numpy(float))]
    d = d.sort_values("asof_ts").drop_duplicates("asof_ts", keep="last")
    y = d["realized_target"].to_numpy(float)
    p = d["prediction"].to_numpy(float)
    lo = d["interval_lo"].to_numpy(float) if d["interval_lo"].notna().all() else None
    hi = d["interval_hi"].to_numpy(float) if d["interval_hi"].notna().all() else None
    est = metric_estimates(y, p, horizon, level, lo, hi) if len(d) else {}
    return {"n": len(d), "metrics": {k: v.as_dict() for k, v in est.items()}, "_est": est}


def quality_report(
    state: StateDB,
    pair: str,
    *,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    windows: Sequence[str] = DEFAULT_WINDOWS,
    now: Any = None,
    level: float = 0.95,
    max_r2_drop: float = 0.05,
) -> dict[str, Any]:
    """Live quality of ``pair`` per model version and window.

    ``reference``: ``{version: {"r2": test R², "da": ..., "coverage": ...}}`` (the registry's
    test metrics; :func:`reference_from_registry`). Returns
    ``{"pair", "now", "versions": {v: {window: {...metrics, "r2_drop", "alert"}}}}``;
    an empty decision log gives an empty valid report.
    """
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    longest = max(pd.Timedelta(w) for w in windows)
    dec = state.read_decisions(pair, end - longest, end, by="asof_ts")
    out: dict[str, Any] = {"pair": pair, "now": end.isoformat(), "versions": {}}
    for ver, grp in dec.groupby("model_version", sort=True):
        hz = grp["horizon"].dropna()
        horizon = int(hz.iloc[0]) if len(hz) else None
        ref = (reference or {}).get(str(ver), {})
        per: dict[str, Any] = {}
        for w in windows:
            sub = grp[grp["asof_ts"] > end - pd.Timedelta(w)]
            q = version_quality(sub, horizon, level)
            est = q.pop("_est")
            q["alert"] = None
            r2 = est.get("r2")
            test_r2 = ref.get("r2")
            if r2 is not None and r2.finite and test_r2 is not None and np.isfinite(test_r2):
                drop = float(test_r2 - r2.value)
                q["test_r2"] = float(test_r2)
                q["r2_drop"] = drop
                distinguishable = bool(r2.hi < test_r2)
                q["r2_drop_significant"] = distinguishable
                if drop > max_r2_drop and distinguishable:
                    q["alert"] = {
                        "severity": "critical",
                        "text": (
                            f"{pair} v{ver} live R² {r2.fmt()} over {w} "
                            f"(n={r2.n}, n_eff={r2.n_eff:.0f}) is {drop:.3f} below the test "
                            f"R² {test_r2:.3f}; the drop is statistically distinguishable "
                            f"(upper {int(level * 100)}% bound {r2.hi:.3f} < test R²)"
                        ),
                    }
            per[w] = q
        out["versions"][str(ver)] = per
    return out


def reference_from_registry(registry: Any, pair: str) -> dict[str, dict[str, float]]:
    """Test metrics per version from the registry (``VersionInfo.test_r2`` etc.)."""
    return {
        v.version: {"r2": v.test_r2, "da": v.test_da, "coverage": v.coverage}
        for v in registry.versions(pair)
    }
