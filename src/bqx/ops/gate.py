"""The evaluation gate: a candidate gets traffic only if it is not significantly worse
than production on the same, most recent out-of-sample bars.

Window: bars after *both* versions' validation segments (the last rows either version's
fitting or calibration saw) plus a purge gap of ``horizon + 1`` bars (targets overlap:
the target at the end of a training segment spans the next ``horizon`` bars), and only
bars whose target has matured; the most recent ``ops.gate_bars`` of them.

Test: Diebold-Mariano on squared errors (:func:`bqx.stats.diebold_mariano`: HAC variance,
HLN correction, Student-t), one-sided "candidate worse". The gate fails when that p-value
is below ``ops.gate_alpha``, when there are fewer than ``ops.gate_min_rows`` bars (too
little evidence is not a pass), or when the candidate's forecasts are not finite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class GateReport:
    pair: str
    candidate: str
    production: str | None
    passed: bool
    reason: str
    window: dict[str, Any] = field(default_factory=dict)
    n: int = 0
    mse_candidate: float | None = None
    mse_production: float | None = None
    mean_diff: float | None = None
    mean_diff_lo: float | None = None
    mean_diff_hi: float | None = None
    stat: float | None = None
    p_candidate_worse: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


def _val_end(art: Any) -> pd.Timestamp | None:
    dw = art.data_window or {}
    ends = [pd.Timestamp(v[-1]) for k, v in dw.items() if k in ("train", "val") and v]
    return max(ends) if ends else None


def evaluate_gate(
    settings: Any,
    pair: str,
    candidate: str,
    *,
    registry: Any,
    store: Any,
    production: str | None = None,
) -> GateReport:
    """Score ``candidate`` and ``production`` (default: the current alias) on the same bars."""
    from bqx.features import columns
    from bqx.ops.data import features_window
    from bqx.stats import diebold_mariano

    o = settings.ops
    prod = production if production is not None else registry.production_version(pair)
    rep = GateReport(pair, str(candidate), prod, False, "")
    if prod is None:
        rep.passed, rep.reason = True, "no production version: nothing to compare against"
        return rep
    cart = registry.load(pair, version=candidate)
    part = registry.load(pair, version=prod)
    ends = [e for e in (_val_end(cart), _val_end(part)) if e is not None]
    after = max(ends) if ends else None
    df = features_window(store, settings, pair, after if after is not None else "1970-01-01")
    if after is not None and len(df):
        df = df[df.index > after].iloc[settings.horizon + 1 :]  # purge gap
    df = df[np.isfinite(df["target"].to_numpy())] if len(df) else df
    df = df.iloc[-o.gate_bars :]
    rep.n = len(df)
    rep.window = {
        "after": after.isoformat() if after is not None else None,
        "purge_bars": settings.horizon + 1,
        "start": df.index[0].isoformat() if len(df) else None,
        "end": df.index[-1].isoformat() if len(df) else None,
    }
    if rep.n < o.gate_min_rows:
        rep.reason = (
            f"too few out-of-sample bars after both training windows: {rep.n} < "
            f"{o.gate_min_rows} (ops.gate_min_rows)"
        )
        return rep
    X = df[columns()].to_numpy(np.float64)
    y = df["target"].to_numpy(np.float64)
    pc = cart.fast.predict(X)
    pp = part.fast.predict(X)
    if not np.isfinite(pc).all():
        rep.reason = f"candidate forecasts are not finite on {int((~np.isfinite(pc)).sum())} bars"
        return rep
    lc, lp = (y - pc) ** 2, (y - pp) ** 2
    cmp = diebold_mariano(lc, lp, horizon=settings.horizon)
    rep.mse_candidate, rep.mse_production = float(lc.mean()), float(lp.mean())
    rep.mean_diff = cmp.mean_diff.value
    rep.mean_diff_lo, rep.mean_diff_hi = cmp.mean_diff.lo, cmp.mean_diff.hi
    rep.stat, rep.p_candidate_worse = cmp.stat, cmp.p_a_worse
    p = cmp.p_a_worse
    if math.isfinite(p) and p < o.gate_alpha:
        rep.reason = (
            f"candidate significantly worse: MSE {rep.mse_candidate:.4g} vs "
            f"{rep.mse_production:.4g} on {rep.n} bars, one-sided DM p = {p:.3g} < "
            f"{o.gate_alpha:g}"
        )
        return rep
    rep.passed = True
    rep.reason = (
        f"not significantly worse: MSE {rep.mse_candidate:.4g} vs {rep.mse_production:.4g} on "
        f"{rep.n} bars, one-sided DM p = {p:.3g} >= {o.gate_alpha:g}"
    )
    return rep
