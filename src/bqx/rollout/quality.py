"""Matured outcomes of a rollout's arms: realised targets and the paired comparison.

A forecast made at bar t is judged only once its target is known, ``horizon`` bars later
("matured"). The realised target comes from the same function training uses
(:func:`bqx.features.pipeline.target_series`) applied to the stored bars, so the live
comparison measures exactly what training optimised; where monitoring already filled the
decision log's ``realized_target`` it is the same number.

Pairing: several requests hit the same bar; one model gives one answer per bar, so the
decision log is reduced to one prediction per (arm, as-of bar). Candidate answers come from
the candidate arm *and* its shadow calls, baseline answers from the baseline arm; bars
answered by both are compared on squared error with a Diebold-Mariano test whose HAC
variance accounts for the overlap of the targets (consecutive 60-bar targets share 59
bars).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bqx.rollout.routing import arm_names


@dataclass
class ArmOutcomes:
    """One row per as-of bar: the arm's prediction and the realised target (NaN if not
    matured yet)."""

    frame: pd.DataFrame  # index asof_ts; columns prediction, target


def realized_targets(store: Any, settings: Any, pair: str, asof: pd.DatetimeIndex) -> pd.Series:
    """The realised target at each ``asof`` bar (NaN while not matured)."""
    from bqx.features.pipeline import target_series

    if len(asof) == 0:
        return pd.Series(dtype=float)
    iv = pd.Timedelta(settings.interval)
    start = asof.min() - 2 * iv
    # generous: gaps and closed hours stretch ``horizon`` bars in wall-clock time
    end = asof.max() + iv * settings.horizon * 4 + pd.Timedelta(days=3)
    bars = store.read(pair, start, end)
    if not len(bars):
        return pd.Series(np.nan, index=asof)
    ts = target_series(
        bars,
        pair,
        horizon=settings.horizon,
        target=settings.target,
        interval=settings.interval,
        max_ffill=settings.max_ffill_bars,
    )
    return ts.reindex(asof)


def arm_outcomes(
    state: Any, store: Any, settings: Any, rollout: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """Per arm label ("baseline"/"candidate"): one prediction per as-of bar, with the
    realised target. Reads the decision log since the rollout started."""
    pair = rollout["pair"]
    dec = state.read_decisions(pair, start=rollout["created_at"])
    base_arm, cand_arm = arm_names(rollout["kind"])
    out: dict[str, pd.DataFrame] = {}
    if not len(dec):
        empty = pd.DataFrame({"prediction": [], "target": []})
        return {"baseline": empty, "candidate": empty.copy()}
    extra = dec["extra"].apply(lambda e: e if isinstance(e, dict) else {})
    rid = extra.apply(lambda e: e.get("rollout_id"))
    arm = extra.apply(lambda e: e.get("arm"))
    mine = rid == rollout["id"]
    groups = {
        "baseline": mine & (arm == base_arm),
        "candidate": mine & arm.isin([cand_arm, "shadow"]),
    }
    all_asof = pd.DatetimeIndex(dec.loc[mine, "asof_ts"].dropna().unique()).sort_values()
    tgt = realized_targets(store, settings, pair, all_asof)
    for name, m in groups.items():
        d = dec.loc[m & dec["prediction"].notna() & dec["asof_ts"].notna()]
        per_bar = d.groupby("asof_ts")["prediction"].mean()
        per_bar.index = pd.DatetimeIndex(per_bar.index)
        out[name] = pd.DataFrame(
            {"prediction": per_bar, "target": tgt.reindex(per_bar.index).to_numpy()},
            index=per_bar.index,
        ).sort_index()
    return out


def paired_quality(
    outcomes: dict[str, pd.DataFrame], horizon: int, level: float = 0.95
) -> dict[str, Any]:
    """Diebold-Mariano on squared errors of the matured bars both arms answered.

    ``mean_diff`` > 0 means the candidate's squared error is larger (worse);
    ``p_candidate_worse`` is the one-sided p-value of that.
    """
    from bqx.stats import diebold_mariano

    b, c = outcomes["baseline"], outcomes["candidate"]
    j = b.add_suffix("_b").join(c.add_suffix("_c"), how="inner")
    j = j[np.isfinite(j["target_b"]) & np.isfinite(j["prediction_b"])]
    j = j[np.isfinite(j["prediction_c"])]
    n = len(j)
    out: dict[str, Any] = {"n_paired": n}
    if n < 3:
        return {**out, "mean_diff": None, "p_candidate_worse": None, "stat": None}
    y = j["target_b"].to_numpy(float)
    lc = (y - j["prediction_c"].to_numpy(float)) ** 2
    lb = (y - j["prediction_b"].to_numpy(float)) ** 2
    cmp = diebold_mariano(lc, lb, horizon=horizon, level=level)
    return {
        **out,
        "mean_diff": cmp.mean_diff.value,
        "mean_diff_lo": cmp.mean_diff.lo,
        "mean_diff_hi": cmp.mean_diff.hi,
        "n_eff": cmp.mean_diff.n_eff,
        "stat": cmp.stat,
        "p_candidate_worse": cmp.p_a_worse,
        "mse_candidate": float(lc.mean()),
        "mse_baseline": float(lb.mean()),
    }
