"""A/B experiments of two model versions on live traffic, and their analysis.

Assignment is the rollout router's hash-sticky split (arm ``a`` = version A, arm ``b`` =
version B, ``split`` = B's share). Outcomes mature ``horizon`` bars later.

Analysis (:func:`analyze`):

* **Directional accuracy**, Beta-Binomial: one outcome per (arm, as-of bar) - a model gives
  one answer per bar however many clients ask - then Beta(1 + k·hits, 1 + k·misses)
  posteriors with ``k = ESS / n``. Why ``k``: targets of consecutive bars overlap (a 60-bar
  return shares 59 bars with the next one) and forecasts are persistent, so hits come in
  runs; counting each bar as an independent Bernoulli trial makes the posterior far too
  narrow and P(B > A) > 0.95 happens several times more often than 5 % when A = B
  (:func:`calibration` measures it). The effective sample size of the hit series
  (:func:`bqx.stats.effective_sample_size`, HAC long-run variance) rescales the counts so
  the posterior has the width the data support. Reported: P(B > A), the expected loss of
  choosing either arm, and the 95 % credible interval of θ_B - θ_A (Monte Carlo).
* **Squared error**: the mean difference e_A² - e_B² on bars both arms answered, with a
  HAC (overlap-aware) 95 % interval (:func:`bqx.stats.mean_estimate`); positive = B better.

Decision rule (the seeds'): after ``min_days`` and ``min_samples`` matured bars per arm,
B wins when P(B > A) >= 0.95 and its expected loss is below ``LOSS_TOLERANCE``; A wins
when P(B > A) <= 0.05 likewise; otherwise the experiment continues. A winning B is promoted
gradually in 10 % steps (60 %, 70 %, ... 100 % from a 50 % split) under the rollout's
rollback guard, then becomes production.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bqx.rollout import RolloutConflictError, RolloutInputError, RolloutNotFoundError
from bqx.state import RolloutExistsError, current_actor
from bqx.universe import normalize_pair

#: expected loss (accuracy points, 0..1) tolerated when declaring a winner
LOSS_TOLERANCE = 0.002
DECIDE_PROB = 0.95
#: effective samples per arm needed before deciding: below ~100 the HAC estimate of the
#: ESS is biased upwards (finite-sample bias of the autocovariances) and P(B > A) is no
#: longer calibrated (docs/performance.md has the table)
MIN_ESS = 150
DRAWS = 20_000


def beta_binomial(
    hits_a: float,
    n_a: float,
    hits_b: float,
    n_b: float,
    *,
    k_a: float = 1.0,
    k_b: float = 1.0,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[str, float]:
    """Posterior comparison of two success rates from (ESS-scaled) counts, uniform priors.

    ``k_*`` scale the counts (ESS / n of the arm's outcome series; 1 = independent trials).
    Returns P(B > A), expected losses of choosing A / B, and the 95 % credible interval
    of θ_B - θ_A.
    """
    rng = np.random.default_rng(seed)
    ta = rng.beta(1 + k_a * hits_a, 1 + k_a * (n_a - hits_a), draws)
    tb = rng.beta(1 + k_b * hits_b, 1 + k_b * (n_b - hits_b), draws)
    d = tb - ta
    lo, hi = np.quantile(d, [0.025, 0.975])
    return {
        "p_b_better": float((d > 0).mean()),
        "loss_choose_b": float(np.maximum(-d, 0).mean()),
        "loss_choose_a": float(np.maximum(d, 0).mean()),
        "diff_mean": float(d.mean()),
        "diff_lo": float(lo),
        "diff_hi": float(hi),
    }


def _ess_factor(x: np.ndarray, horizon: int | None) -> float:
    from bqx.stats import effective_sample_size

    n = len(x)
    if n < 3:
        return 1.0
    return float(min(1.0, effective_sample_size(x, horizon=horizon) / n))


def analyze(
    a: pd.DataFrame, b: pd.DataFrame, horizon: int | None, *, adjust: bool = True, seed: int = 0
) -> dict[str, Any]:
    """Compare arms from one-row-per-bar frames with ``prediction`` and ``target``
    (matured rows only are used). ``adjust=False`` gives the naive count analysis (for the
    calibration table only)."""
    from bqx.stats import mean_estimate

    def hits(f: pd.DataFrame) -> np.ndarray:
        f = f[np.isfinite(f["target"]) & np.isfinite(f["prediction"]) & (f["target"] != 0)]
        return (np.sign(f["prediction"].to_numpy()) == np.sign(f["target"].to_numpy())).astype(
            float
        )

    ha, hb = hits(a.sort_index()), hits(b.sort_index())
    ka = _ess_factor(ha, horizon) if adjust else 1.0
    kb = _ess_factor(hb, horizon) if adjust else 1.0
    out: dict[str, Any] = {
        "n_a": len(ha),
        "n_b": len(hb),
        "accuracy_a": float(ha.mean()) if len(ha) else None,
        "accuracy_b": float(hb.mean()) if len(hb) else None,
        "ess_a": ka * len(ha),
        "ess_b": kb * len(hb),
    }
    if len(ha) and len(hb):
        out.update(beta_binomial(ha.sum(), len(ha), hb.sum(), len(hb), k_a=ka, k_b=kb, seed=seed))
    j = a.add_suffix("_a").join(b.add_suffix("_b"), how="inner")
    j = j[np.isfinite(j["target_a"]) & np.isfinite(j["prediction_a"])]
    j = j[np.isfinite(j["prediction_b"])]
    if len(j) >= 3:
        y = j["target_a"].to_numpy(float)
        d = (y - j["prediction_a"].to_numpy(float)) ** 2 - (
            y - j["prediction_b"].to_numpy(float)
        ) ** 2
        est = mean_estimate(d, horizon)
        out["sq_err_diff"] = {
            "what": "mean(e_A² - e_B²) on bars both arms answered; > 0: B better",
            "n_paired": len(j),
            **est.as_dict(),
        }
    return out


def decide(analysis: dict[str, Any], min_samples: int) -> tuple[str | None, str]:
    """(winner "a"/"b"/None, why) by the decision rule (the duration is checked by the
    caller)."""
    n = min(analysis.get("n_a", 0), analysis.get("n_b", 0))
    if n < min_samples:
        return None, f"too few matured bars: {n} < {min_samples} per arm"
    p = analysis.get("p_b_better")
    if p is None:
        return None, "no outcomes"
    ess = min(analysis.get("ess_a", 0), analysis.get("ess_b", 0))
    if ess < MIN_ESS:
        return None, f"too few effective samples: {ess:.0f} < {MIN_ESS} per arm"
    if p >= DECIDE_PROB and analysis["loss_choose_b"] <= LOSS_TOLERANCE:
        return (
            "b",
            f"P(B > A) = {p:.3f} >= {DECIDE_PROB}, expected loss {analysis['loss_choose_b']:.4f}",
        )
    if p <= 1 - DECIDE_PROB and analysis["loss_choose_a"] <= LOSS_TOLERANCE:
        return (
            "a",
            f"P(B > A) = {p:.3f} <= {1 - DECIDE_PROB:.2f}, expected loss {analysis['loss_choose_a']:.4f}",
        )
    return None, f"undecided: P(B > A) = {p:.3f}"


# ---------------------------------------------------------------------------------------
# simulation: calibration under the null, power under a planted effect
# ---------------------------------------------------------------------------------------
def simulate_arms(
    n: int, horizon: int, effect: float, rng: np.random.Generator, phi: float = 0.97
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two arms forecasting the same overlapping target over ``n`` bars.

    The target is the sum of the next ``horizon`` unit-variance increments (overlapping, as
    in production). Each arm's forecast = ``skill`` x the true future target + a persistent
    AR(1) noise (coefficient ``phi``: real forecasts move slowly bar to bar). A has skill
    0.1, B has ``0.1 + effect``; ``effect = 0`` is the null A = B.
    """
    e = rng.standard_normal(n + horizon)
    cs = np.concatenate([[0.0], np.cumsum(e)])
    y = cs[horizon + 1 : n + horizon + 1] - cs[1 : n + 1]
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")

    def arm(skill: float) -> pd.DataFrame:
        from scipy.signal import lfilter

        z = rng.standard_normal(n)
        z[1:] *= math.sqrt(1 - phi**2)
        noise = lfilter([1.0], [1.0, -phi], z)
        p = skill * y / math.sqrt(horizon) + noise
        return pd.DataFrame({"prediction": p, "target": y}, index=idx)

    return arm(0.1), arm(0.1 + effect)


def calibration(
    n_sims: int = 300,
    n: int = 2000,
    horizon: int = 60,
    effect: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Share of simulated experiments with P(B > A) > 0.95, ESS-adjusted and naive.

    Under the null (``effect = 0``) the nominal rate is 5 %; with a planted effect the
    share is the power."""
    rng = np.random.default_rng(seed)
    adj, naive = [], []
    for i in range(n_sims):
        a, b = simulate_arms(n, horizon, effect, rng)
        adj.append(analyze(a, b, horizon, adjust=True, seed=i)["p_b_better"])
        naive.append(analyze(a, b, horizon, adjust=False, seed=i)["p_b_better"])
    pa, pn = np.array(adj), np.array(naive)
    out: dict[str, Any] = {"n_sims": n_sims, "n_bars": n, "horizon": horizon, "effect": effect}
    for q in (0.90, 0.95, 0.99):
        out[f"adjusted_gt_{q}"] = float((pa > q).mean())
        out[f"naive_gt_{q}"] = float((pn > q).mean())
    return out


# ---------------------------------------------------------------------------------------
# experiments on live traffic
# ---------------------------------------------------------------------------------------
class ExperimentManager:
    """create / status / stop, and the operator's evaluate (through RolloutManager)."""

    def __init__(self, rollouts: Any) -> None:
        self.r = rollouts

    def create(
        self,
        pair: str,
        a: str | int,
        b: str | int,
        *,
        split: float = 0.5,
        min_samples: int = 500,
        min_days: float = 7.0,
        actor: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        pair = normalize_pair(pair)
        a, b = str(a), str(b)
        if a == b:
            raise RolloutInputError(
                f"arms A and B are both version {a}: an experiment needs two versions"
            )
        if not 0 < split < 1:
            raise RolloutInputError(f"split {split} must be in (0, 1)")
        for v in (a, b):
            self.r.check_version(pair, v)
        cur = self.r.active(pair)
        if cur is not None:
            raise self.r._running(cur)
        try:
            ro = self.r.state.create_rollout(
                pair=pair, kind="experiment", baseline_version=a, candidate_version=b,
                state="canary", steps=[split], step=0, weight=split, shadow=False,
                dwell_s=self.r.settings.rollout.dwell_s, shadow_s=0.0,
                actor=actor or current_actor(), reason=reason or "experiment created",
                experiment={
                    "pair": pair, "a_version": a, "b_version": b, "split": split,
                    "min_samples": min_samples, "min_days": min_days,
                },
            )  # fmt: skip
        except RolloutExistsError:
            raise self.r._running(self.r.active(pair)) from None
        return self.get(rollout_id=ro["id"])

    def get(self, experiment_id: int | None = None, *, rollout_id: int | None = None) -> dict:
        rows = self.r.state.experiments(experiment_id=experiment_id)
        if rollout_id is not None:
            rows = [x for x in self.r.state.experiments() if x["rollout_id"] == rollout_id]
        if not rows:
            raise RolloutNotFoundError(f"no experiment {experiment_id}")
        return rows[0]

    def status(self, experiment_id: int) -> dict[str, Any]:
        ex = self.get(experiment_id)
        ro = self.r.state.get_rollout(ex["rollout_id"])
        out = {**ex, "rollout": {k: ro[k] for k in ("id", "state", "weight", "steps", "gen")}}
        if ex["state"] in ("running", "promoting"):
            out["analysis"] = self.analysis(ro)
            out["elapsed_days"] = (self.r.clock() - ex["created_at"]).total_seconds() / 86400
        return out

    def analysis(self, ro: dict[str, Any]) -> dict[str, Any]:
        from bqx.rollout.quality import arm_outcomes

        outs = arm_outcomes(self.r.state, self.r.store, self.r.settings, ro)
        return analyze(outs["baseline"], outs["candidate"], self.r.settings.horizon)

    def stop(self, experiment_id: int, *, actor: str | None = None, reason: str | None = None):
        ex = self.get(experiment_id)
        ro = self.r.state.get_rollout(ex["rollout_id"])
        if ro is None or ro["state"] not in ("shadow", "canary"):
            raise RolloutConflictError(f"experiment {experiment_id} is not running ({ex['state']})")
        self.r._apply(
            ro, action="stop", state="stopped", weight=0.0, shadow=False,
            reason=reason or "manual stop", actor=actor or current_actor(),
        )  # fmt: skip
        return self.get(experiment_id)

    def evaluate(self, ro: dict[str, Any], v: Any, actor: str) -> Any:
        ex = self.get(rollout_id=ro["id"])
        if ex["state"] == "promoting":
            q = v.checks.get("quality", {})
            return self.r._advance(ro, v, q, actor)
        elapsed = (self.r.clock() - ex["created_at"]).total_seconds() / 86400
        an = self.analysis(ro)
        v.checks["analysis"] = an
        if elapsed < ex["min_days"]:
            v.reason = f"running: {elapsed:.2f} of {ex['min_days']:g} days"
            return v
        winner, why = decide(an, int(ex["min_samples"]))
        if winner is None:
            v.reason = why
            return v
        if winner == "a":
            v.rollout = self.r._apply(
                ro, action="decide", state="stopped", weight=0.0, shadow=False,
                reason=f"A (v{ex['a_version']}) wins: {why}", actor=actor,
                experiment={"state": "decided", "winner": "a", "analysis": _jsonable(an),
                            "stopped_at": self.r.clock(), "reason": why},
            )  # fmt: skip
            v.action, v.reason = "decide", f"A wins: {why}"
            return v
        split = float(ex["split"])
        steps = [round(split + 0.1 * i, 4) for i in range(1, 11) if split + 0.1 * i < 1 - 1e-9]
        steps.append(1.0)
        v.rollout = self.r._apply(
            ro, action="decide", state="canary", step=0, weight=steps[0], steps=steps,
            reason=f"B (v{ex['b_version']}) wins: {why}; promoting in 10 % steps", actor=actor,
            experiment={"state": "promoting", "winner": "b", "analysis": _jsonable(an),
                        "reason": why},
        )  # fmt: skip
        v.action, v.reason = "decide", f"B wins: {why}"
        return v


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(d, default=float, allow_nan=True).replace("NaN", "null"))
