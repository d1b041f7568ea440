"""Input drift: captured live model inputs vs the version's frozen training baseline.

Per selected feature (and per pair and model version) over a window of captured inputs:

* ``kl``: KL(live || baseline) on the baseline's frozen bins, both smoothed with
  ``smoothing`` pseudo-counts per bin (Laplace; keeps empty bins finite). Drives severity.
* ``psi``: population stability index on the same smoothed bins.
* ``ks``: the largest gap between the two binned CDFs (a *descriptive* number: on
  autocorrelated windows a KS test p-value is meaningless and fires constantly, so it is
  never used to alert - STATISTICS-NOTES).
* ``wasserstein_std``: W1 distance between the quantile functions (at the baseline's stored
  percentiles/deciles), in units of the baseline standard deviation.
* ``missing_rate`` (live) and ``out_of_range`` (share of live values outside the training
  [min, max]).

Severity: ``critical`` if kl > ``critical_kl`` (0.3), ``warning`` if > ``warning_kl`` (0.1),
``insufficient`` with fewer than ``min_n`` finite live values. The defaults have NOT yet been
calibrated against a measured false-alarm rate (issue 12 item 4 remains open).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bqx.monitoring.baseline import PERCENTILES, bin_index, load_baseline

if TYPE_CHECKING:
    from bqx.registry import Registry
    from bqx.state import StateDB


@dataclass(frozen=True)
class DriftConfig:
    """Drift thresholds (KL in nats) and estimation choices."""

    warning_kl: float = 0.1
    critical_kl: float = 0.3
    smoothing: float = 0.5  # pseudo-count per bin
    min_n: int = 100
    window_hours: float = 24.0  # of served bars (asof_ts)

    @property
    def window(self) -> pd.Timedelta:
        return pd.Timedelta(hours=self.window_hours)


def _smoothed(counts: np.ndarray, a: float) -> np.ndarray:
    c = counts.astype(np.float64) + a
    return c / c.sum()


def feature_drift(
    col: Mapping[str, Any], x: np.ndarray, cfg: DriftConfig = DriftConfig()
) -> dict[str, Any]:
    """Drift of one feature: ``col`` is its baseline entry, ``x`` the live values."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    fin = x[np.isfinite(x)]
    out: dict[str, Any] = {
        "n": n,
        "missing_rate": float(1 - len(fin) / n) if n else None,
        "baseline_missing_rate": col.get("missing_rate"),
    }
    edges = np.asarray(col.get("edges", []), dtype=np.float64)
    shares = np.asarray(col.get("shares", [1.0]), dtype=np.float64)
    if len(fin) < cfg.min_n or col.get("mean") is None:
        out.update(kl=None, psi=None, ks=None, wasserstein_std=None, out_of_range=None)
        out["severity"] = "insufficient"
        return out
    k = len(shares)
    live_counts = np.bincount(bin_index(edges, fin), minlength=k)
    nb = int(col.get("n", 10_000) * (1 - (col.get("missing_rate") or 0.0))) or 1
    p = _smoothed(live_counts, cfg.smoothing)
    q = _smoothed(shares * nb, cfg.smoothing)
    kl = float(np.sum(p * np.log(p / q)))
    psi = float(np.sum((p - q) * np.log(p / q)))
    ks = float(np.max(np.abs(np.cumsum(live_counts / len(fin)) - np.cumsum(shares))))
    # W1 between quantile functions at the baseline's known quantile levels
    us, qb = _baseline_quantiles(col)
    ql = np.quantile(fin, us)
    std = col.get("std") or 0.0
    w1 = float(np.trapezoid(np.abs(ql - qb), us) / (us[-1] - us[0]))
    oor = float(np.mean((fin < col["min"]) | (fin > col["max"])))
    sev = "critical" if kl > cfg.critical_kl else "warning" if kl > cfg.warning_kl else "ok"
    out.update(
        kl=kl,
        psi=psi,
        ks=ks,
        wasserstein_std=(w1 / std) if std > 0 else None,
        out_of_range=oor,
        severity=sev,
    )
    return out


def _baseline_quantiles(col: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    pts = {p / 100: v for p, v in zip(PERCENTILES, col["percentiles"].values(), strict=True)}
    pts[0.0], pts[1.0] = col["min"], col["max"]
    us = np.array(sorted(pts))
    return us, np.array([pts[u] for u in us])


def drift_frame(
    baseline: Mapping[str, Any], live: pd.DataFrame, cfg: DriftConfig = DriftConfig()
) -> pd.DataFrame:
    """Per-feature drift rows (sorted by KL, worst first) of the baseline's feature columns."""
    rows = []
    for name, col in baseline["columns"].items():
        if name.startswith("__"):
            continue
        x = live[name].to_numpy(np.float64) if name in live else np.full(len(live), np.nan)
        rows.append({"feature": name, **feature_drift(col, x, cfg)})
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values("kl", ascending=False, na_position="last").reset_index(drop=True)
    return df


def drift_report(
    state: StateDB,
    registry: Registry,
    pair: str,
    *,
    now: Any = None,
    cfg: DriftConfig = DriftConfig(),
) -> dict[str, Any]:
    """Drift of ``pair``'s captured inputs over the last ``cfg.window`` of served bars, per
    model version. An empty capture log gives an empty (valid) report."""
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    cap = state.read_captures(pair, end - cfg.window, end)
    out: dict[str, Any] = {
        "pair": pair,
        "window": [(end - cfg.window).isoformat(), end.isoformat()],
        "versions": {},
    }
    for ver, grp in cap.groupby("model_version", sort=True):
        base = load_baseline(registry, pair, str(ver))
        df = drift_frame(base, grp, cfg)
        sev = df["severity"] if len(df) else pd.Series(dtype=str)
        out["versions"][str(ver)] = {
            "n": len(grp),
            "worst": df.iloc[0].to_dict() if len(df) else None,
            "warning": int((sev == "warning").sum()),
            "critical": int((sev == "critical").sum()),
            "features": df.to_dict("records"),
        }
    return out
