"""How many variants were tried on the same out-of-sample months, and the deflated Sharpe.

``bqx backtest --reuse-predictions`` makes exit and sizing sweeps free: every variant trades
the same cached walk-forward predictions over the same months, and the best of many Sharpe
ratios is biased upwards even when no variant has an edge. Each run is therefore recorded in a
ledger per prediction set (``<home>/backtests/variants/<cache key>.jsonl``: one JSON line per
run, with the variant's configuration and its daily-return Sharpe), and the report carries the
**deflated Sharpe ratio** (Bailey & López de Prado, "The Deflated Sharpe Ratio", J. Portfolio
Management 40(5), 2014): the probabilistic Sharpe ratio of this run against the Sharpe ratio
the best of N unskilled variants is expected to reach,

    SR0 = sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))),
    DSR = Φ((SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR²)),

with N the number of *distinct* variants tried (re-running the same configuration is not a
new trial), V the variance of their Sharpe ratios, γ Euler's constant, T the trading days,
g3/g4 the skewness and (Pearson) kurtosis of the daily returns. Sharpe ratios here are per
trading day (not annualised); with N = 1, SR0 = 0 and DSR is the PSR.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """E[max SR] of ``n_trials`` unskilled variants whose Sharpe ratios have variance
    ``var_sharpe`` (same units as the Sharpe ratios; 0 for one trial)."""
    if n_trials <= 1 or not var_sharpe > 0:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(var_sharpe) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe(
    sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, var_sharpe: float
) -> tuple[float, float]:
    """(DSR, SR0): the probability that the true per-period Sharpe exceeds SR0, the expected
    maximum of ``n_trials`` unskilled variants. ``kurtosis`` is Pearson's (3 for a normal)."""
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    if not (np.isfinite(sr) and n_obs > 2 and np.isfinite(skew) and np.isfinite(kurtosis)):
        return float("nan"), sr0
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if var <= 0:
        return float("nan"), sr0
    z = (sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(var)
    return float(stats.norm.cdf(z)), sr0


def variant_id(config: dict[str, Any]) -> str:
    """A stable id of one variant's configuration (exits, sizing, costs, signals, period)."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_variant(
    home: Path, key: str, config: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    """Append this run to the ledger of prediction set ``key`` and return the honesty figures:
    variants tried, the deflated Sharpe and the Sharpe the best unskilled variant would reach
    (annualised for display), and the ledger's path."""
    port = summary.get("portfolio") or {}
    sig = port.get("significance") or {}
    n_year = int((summary.get("conventions") or {}).get("periods_per_year") or 260)
    sr_ann = port.get("sharpe")
    sr = float(sr_ann) / math.sqrt(n_year) if isinstance(sr_ann, int | float) else float("nan")
    vid = variant_id(config)
    path = Path(home) / "backtests" / "variants" / f"{key}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variant": vid,
        "sharpe_per_day": sr if np.isfinite(sr) else None,
        "trading_days": port.get("trading_days"),
        "config": config,
    }
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
    latest: dict[str, float] = {}
    runs = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        runs += 1
        v = r.get("sharpe_per_day")
        latest[r["variant"]] = float(v) if v is not None else float("nan")
    srs = np.array([v for v in latest.values() if np.isfinite(v)])
    var = float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0
    n = len(latest)
    dsr, sr0 = deflated_sharpe(
        sr,
        int(port.get("trading_days") or 0),
        _num(sig.get("skew")),
        _num(sig.get("kurtosis")),
        n,
        var,
    )
    return {
        "variants_tried": n,
        "runs": runs,
        "variant": vid,
        "deflated_sharpe": dsr,
        "expected_max_sharpe": sr0 * math.sqrt(n_year),
        "ledger": str(path),
        "note": "DSR: probability that the Sharpe beats the best of the variants tried on "
        "these out-of-sample months by luck (Bailey & López de Prado 2014)",
    }


def _num(v: object) -> float:
    """A metric that may be missing (None: too few days to estimate it) as a float (NaN)."""
    return float(v) if isinstance(v, int | float) else float("nan")
