"""A 28-pair FX market simulator (SPEC section 9): data without a network, with known truth.

Model
-----
Eight currencies carry log-values ``x_c`` (in a common numeraire). Each pair is the ratio of
its two currencies, ``price_AB = exp(x_A - x_B)``, so triangles hold exactly
(EURUSD * USDJPY == EURJPY up to float rounding). Per bar ``t`` and currency ``c``::

    n_c(t)  = sigma_c * season(t) * regime(t) * exp(h_c(t)) * z_c(t)     (correlated z)
    m_c(t)  = lam * m_c(t-1) + (1 - lam) * n_c(t)                          (EMA of shocks)
    dx_c(t) = kappa * m_c(t-1) + n_c(t)

* ``z`` is N(0, R) with R from a three-factor structure (risk-on, Europe, commodity bloc);
* ``regime`` is a 3-state Markov chain (calm 0.7, normal 1.0, turbulent 1.9) with durations of
  hours to days; ``h_c`` a log-OU stochastic volatility (half-life ~6 h);
* ``season`` is the intraday session curve (Asia quiet, London and the London/NY overlap busy,
  the daily rollover at 17:00 New York quietest);
* the market is closed from Friday 17:00 to Sunday 17:00 New York time (no bars);
* spreads widen at rollover, in volatile regimes and in thin sessions; tick volume follows
  volatility; high/low come from an 8-step intrabar path.

The predictable component
-------------------------
``kappa * m_c(t-1)`` is a momentum drift: an EMA (span 240 bars, ``signal_span``) of each
currency's past shocks.
For a pair the drift is ``kappa * (m_A - m_B)`` and the state ``m_A - m_B`` is observable from
the pair's own closes (:func:`oracle_state`), so the best possible forecast of the BQX target
``y(t) = bqx_60(t+60) = sum_j (j/60) r(t+j)`` is exactly::

    E[y(t) | bars <= t] = kappa * m(t) * sum_{j=1..60} (j/60) lam^(j-1)

``signal_strength`` is the oracle R² this gives under constant volatility (0 = a pure random
walk, up to ~0.45); ``kappa`` is solved from it. Shocks are scaled by 1/(1 + kappa) so that
daily volatility stays realistic whatever the strength. :func:`oracle_prediction` computes the
oracle forecast from closes, and :func:`generate` reports the empirical oracle R² of the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from bqx.calendar import minutes_from_rollover, ny_trading_index, to_utc
from bqx.data.bars import normalize_bars
from bqx.universe import CURRENCIES, PAIRS, normalize_pairs, pip_size

#: Value of one unit of each currency in USD at the start (realistic 2024 levels).
START_USD_VALUE = {
    "EUR": 1.08, "GBP": 1.27, "AUD": 0.66, "NZD": 0.61,
    "USD": 1.0, "CAD": 1 / 1.36, "CHF": 1 / 0.88, "JPY": 1 / 150.0,
}  # fmt: skip
#: Annualised volatility of each currency against the numeraire.
CURRENCY_VOL = {
    "EUR": 0.055, "GBP": 0.065, "AUD": 0.085, "NZD": 0.09,
    "USD": 0.055, "CAD": 0.06, "CHF": 0.06, "JPY": 0.075,
}  # fmt: skip
# factor loadings: risk-on, Europe, commodity bloc
_LOADINGS = {
    "EUR": (0.05, 0.60, 0.00), "GBP": (0.15, 0.40, 0.00), "AUD": (0.50, 0.00, 0.45),
    "NZD": (0.50, 0.00, 0.45), "USD": (-0.10, 0.00, 0.00), "CAD": (0.30, 0.00, 0.40),
    "CHF": (-0.35, 0.55, 0.00), "JPY": (-0.50, 0.00, 0.00),
}  # fmt: skip
#: Typical spread in pips (ECN-like, quiet hours widen it).
BASE_SPREAD_PIPS = {
    "EURGBP": 0.9, "EURAUD": 1.6, "EURNZD": 2.4, "EURUSD": 0.6, "EURCAD": 1.7, "EURCHF": 1.3,
    "EURJPY": 1.1, "GBPAUD": 2.2, "GBPNZD": 3.2, "GBPUSD": 0.9, "GBPCAD": 2.3, "GBPCHF": 2.0,
    "GBPJPY": 1.8, "AUDNZD": 2.0, "AUDUSD": 0.8, "AUDCAD": 1.6, "AUDCHF": 1.7, "AUDJPY": 1.2,
    "NZDUSD": 1.2, "NZDCAD": 2.2, "NZDCHF": 2.3, "NZDJPY": 1.6, "USDCAD": 1.0, "USDCHF": 1.0,
    "USDJPY": 0.7, "CADCHF": 2.0, "CADJPY": 1.5, "CHFJPY": 1.9,
}  # fmt: skip
#: Intraday volatility multiplier by UTC hour (mean 1), interpolated within the hour.
_SEASON_UTC = np.array(
    [0.70, 0.80, 0.75, 0.65, 0.55, 0.55, 0.80, 1.20, 1.35, 1.20, 1.05, 1.00,
     1.25, 1.50, 1.55, 1.40, 1.10, 0.85, 0.70, 0.60, 0.50, 0.40, 0.55, 0.65]
)  # fmt: skip
_REGIME_MULT = np.array([0.7, 1.0, 1.9])
REGIME_NAMES = ("calm", "normal", "turbulent")
_REGIME_HOURS = np.array([48.0, 72.0, 7.0])  # expected duration of calm / normal / turbulent
_TRADING_MIN_PER_YEAR = 260 * 1440
SIGNAL_SPAN = 240
SUBSTEPS = 8
CHUNK_BARS = 10_080


@dataclass
class SimResult:
    """Simulated bars plus the truth needed to check models against."""

    bars: pd.DataFrame
    signal_strength: float
    kappa: float
    seed: int
    oracle_r2: dict[str, float] = field(default_factory=dict)
    #: the true volatility regime of every bar (index ``ts``; 0 calm, 1 normal, 2 turbulent,
    #: see :data:`REGIME_NAMES`), shared by all pairs: the truth a regime detector is scored on
    regimes: pd.Series | None = None

    @property
    def oracle_r2_mean(self) -> float:
        v = [x for x in self.oracle_r2.values() if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")


def _season(idx: pd.DatetimeIndex) -> np.ndarray:
    h = idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0
    base = np.interp(h, np.arange(25), np.append(_SEASON_UTC, _SEASON_UTC[0]))
    return base / _SEASON_UTC.mean()


def _correlation() -> np.ndarray:
    b = np.array([_LOADINGS[c] for c in CURRENCIES])
    cov = b @ b.T
    cov[np.diag_indices_from(cov)] = 1.0
    return cov


def _lam(span: int = SIGNAL_SPAN) -> float:
    return 1.0 - 2.0 / (span + 1.0)


def _target_weights(horizon: int, target: str) -> np.ndarray:
    if target == "bqx":
        return np.arange(1, horizon + 1) / horizon
    return np.ones(horizon)


def theoretical_r2(
    kappa: float, horizon: int = 60, target: str = "bqx", span: int = SIGNAL_SPAN
) -> float:
    """Oracle R² of the target under constant volatility for drift gain ``kappa`` (momentum
    EMA of ``span`` bars)."""
    lam = _lam(span)
    w = _target_weights(horizon, target)
    c = float(np.sum(w * lam ** np.arange(horizon)))
    var_m = (1 - lam) ** 2 / (1 - lam**2)
    v_hat = kappa**2 * c**2 * var_m
    a = np.array(
        [
            w[i] + kappa * (1 - lam) * np.sum(w[i + 1 :] * lam ** np.arange(horizon - i - 1))
            for i in range(horizon)
        ]
    )
    return float(v_hat / (v_hat + np.sum(a**2)))


@lru_cache(maxsize=64)
def kappa_for_strength(strength: float, span: int = SIGNAL_SPAN) -> float:
    """Solve ``theoretical_r2(kappa, span=span) == strength`` (monotone in kappa) by bisection.

    A shorter momentum ``span`` needs a larger ``kappa`` for the same strength and caps it
    (the state must stay recoverable from closes: ``kappa < span``), so not every strength is
    reachable with every span (ValueError)."""
    if strength <= 0:
        return 0.0
    if strength >= 0.5:
        raise ValueError("signal_strength is the oracle R² and must be in [0, 0.5)")
    if span < 2:
        raise ValueError("signal_span must be >= 2 bars")
    # the default span keeps the original bracket (same kappa, same bytes)
    hi = 64.0 if span == SIGNAL_SPAN else min(64.0, 0.9 * span)
    if theoretical_r2(hi, span=span) < strength:
        raise ValueError(
            f"signal_strength {strength} is not reachable with signal_span {span} "
            f"(at most {theoretical_r2(hi, span=span):.3f})"
        )
    lo = 0.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if theoretical_r2(mid, span=span) < strength:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def oracle_state(close: np.ndarray, kappa: float, span: int = SIGNAL_SPAN) -> np.ndarray:
    """The simulator's momentum state ``m_A - m_B`` recovered from a pair's closes.

    From ``r(t) = kappa*m(t-1) + n(t)`` and ``m(t) = lam*m(t-1) + (1-lam)*n(t)``:
    ``m(t) = (lam - (1-lam)*kappa) * m(t-1) + (1-lam) * r(t)``, starting at 0 on the first bar.
    """
    lam = _lam(span)
    r = np.diff(np.log(np.asarray(close, dtype="float64")), prepend=np.nan)
    r[0] = 0.0
    psi = lam - (1 - lam) * kappa
    return lfilter([1 - lam], [1.0, -psi], r)


def oracle_prediction(
    close: np.ndarray,
    signal_strength: float,
    horizon: int = 60,
    target: str = "bqx",
    span: int = SIGNAL_SPAN,
) -> np.ndarray:
    """Best possible forecast of the target at every bar, from closes only (``span``: the
    ``signal_span`` the data were simulated with).

    Exact when ``close`` starts at the first simulated bar (the state starts at zero).
    """
    kappa = kappa_for_strength(signal_strength, span)
    lam = _lam(span)
    c = float(np.sum(_target_weights(horizon, target) * lam ** np.arange(horizon)))
    return kappa * c * oracle_state(close, kappa, span)


def realized_target(close: np.ndarray, horizon: int = 60, target: str = "bqx") -> np.ndarray:
    """The target computed from closes (reference implementation, NaN at the end)."""
    lp = np.log(np.asarray(close, dtype="float64"))
    n = len(lp)
    y = np.full(n, np.nan)
    if n <= horizon:
        return y
    if target == "return":
        y[: n - horizon] = lp[horizon:] - lp[:-horizon]
        return y
    # bqx_h(T) = lp[T] - mean(lp[T-h..T-1]); y(t) = bqx_h(t+h)
    cs = np.concatenate([[0.0], np.cumsum(lp)])
    t = np.arange(n - horizon)
    T = t + horizon
    y[: n - horizon] = lp[T] - (cs[T] - cs[t]) / horizon
    return y


class _Regime:
    def __init__(self, rng: np.random.Generator, bars_per_hour: float):
        self.rng = rng
        self.p_stay = 1.0 - 1.0 / np.maximum(_REGIME_HOURS * bars_per_hour, 1.5)
        self.state = 1

    def path(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int8)
        i = 0
        u = self.rng
        while i < n:
            dur = int(u.geometric(1.0 - self.p_stay[self.state]))
            out[i : i + dur] = self.state
            i += dur
            if i < n or dur > 0:
                others = [s for s in range(3) if s != self.state]
                self.state = int(others[u.integers(0, 2)])
        # the state carried to the next chunk is the one the last bar was in
        self.state = int(out[-1])
        return out


def generate(
    days: float = 30,
    pairs: Sequence[str] | str | None = None,
    seed: int = 42,
    signal_strength: float = 0.0,
    start: Any = "2024-01-01",
    interval: timedelta = timedelta(minutes=1),
    progress: Callable[[int, int], None] | None = None,
    *,
    signal_on_share: float = 1.0,
    signal_switch_days: float = 5.0,
    tail_df: float | None = None,
    vol_clustering: float = 1.0,
    signal_cycle_days: float | None = None,
    signal_cycle_low: float = -1.0,
    signal_span: int = SIGNAL_SPAN,
) -> SimResult:
    """Simulate ``days`` calendar days of bars for ``pairs`` (default all 28).

    Deterministic for a seed; the currencies are always simulated together, so a pair's data
    does not depend on which other pairs were requested.

    Realism options (what real FX does to models; defaults = the original simulator, same
    bytes): ``signal_on_share`` < 1 switches the planted signal on and off (a two-state
    Markov chain: mean "off" spell ``signal_switch_days`` days, "on" spells scaled so the
    long-run "on" share is ``signal_on_share``; 0 = the signal never appears);
    ``tail_df`` makes the bar shocks Student-t with that many degrees of freedom (unit
    variance; 3-5 = FX-like heavy tails); ``vol_clustering`` multiplies the dispersion of
    the log-volatility process (> 1 = stronger volatility clustering);
    ``signal_cycle_days`` makes the predictable component drift slowly: the momentum
    coefficient cycles as ``kappa(t) = kappa * c(t)``, ``c`` going from 1 at ``start`` down
    to ``signal_cycle_low`` at half the cycle and back (a cosine; t in calendar days since
    ``start``), so a model fitted on one period is wrong later on (None = constant, the
    default; :func:`signal_coefficient` gives ``c``). ``signal_cycle_low = -1`` rotates
    momentum through no signal into mean reversion: use a moderate strength then (<= ~0.1,
    kappa <~ 1.3), since with a large kappa the negative phase overshoots (a shock is
    reverted several times over) and past returns still look like momentum. ``0`` fades
    the signal out and back in (any strength). The oracle (:func:`oracle_prediction`)
    assumes the signal is always on and constant.

    ``signal_span`` is the span (bars) of the momentum EMA (default 240). A shorter span makes
    the predictable component short-lived: at 240 the target stays autocorrelated beyond the
    60-bar horizon, so the naive "last known target" forecast captures part of the signal; at
    ~90-120 it captures almost none (the drift decays within the horizon) and a model has to
    learn the signal to beat that baseline (the demo's market, ``scripts/demo.sh``). Give the
    same span to :func:`oracle_prediction`.
    """
    if not 0.0 <= signal_on_share <= 1.0:
        raise ValueError("signal_on_share must be in [0, 1]")
    if signal_cycle_days is not None and not signal_cycle_days > 0:
        raise ValueError("signal_cycle_days must be positive")
    if tail_df is not None and tail_df <= 2:
        raise ValueError("tail_df must be > 2 (finite variance)")
    plist = normalize_pairs(pairs)
    if days <= 0:
        raise ValueError("days must be positive")
    kappa = kappa_for_strength(float(signal_strength), int(signal_span))
    t0 = to_utc(start)
    index = ny_trading_index(t0, t0 + pd.Timedelta(days=days), interval)
    n_total = len(index)
    if n_total == 0:
        raise ValueError(f"no trading time between {t0} and {days} days later")
    rng = np.random.default_rng(seed)
    minutes = pd.Timedelta(interval).total_seconds() / 60.0
    bars_per_hour = 60.0 / minutes
    ncur = len(CURRENCIES)
    chol = np.linalg.cholesky(_correlation())
    sig = np.array([CURRENCY_VOL[c] for c in CURRENCIES]) * np.sqrt(minutes / _TRADING_MIN_PER_YEAR)
    sig = sig / (1.0 + kappa)
    lam = _lam(int(signal_span))
    phi_h = 0.5 ** (1.0 / (6 * bars_per_hour))
    h_sd = 0.25 * float(vol_clustering)
    extra = np.random.default_rng([seed, 10_007])  # realism draws: the main stream is unchanged
    sig_on = 1.0
    p_off = p_on = 0.0
    if signal_on_share < 1.0:
        stay = max(1.0, signal_switch_days * 24 * bars_per_hour)
        p_on = 1.0 / stay if signal_on_share > 0 else 0.0  # off -> on
        p_off = p_on * (1 - signal_on_share) / signal_on_share if signal_on_share > 0 else 1.0
        sig_on = float(extra.random() < signal_on_share)
    regime = _Regime(rng, bars_per_hour)
    x = np.log(np.array([START_USD_VALUE[c] for c in CURRENCIES]))
    m = np.zeros(ncur)
    h = rng.normal(0, h_sd, ncur)
    zi_h = None
    cidx = {c: i for i, c in enumerate(CURRENCIES)}
    base_ix = np.array([cidx[p[:3]] for p in plist])
    quote_ix = np.array([cidx[p[3:]] for p in plist])
    base_ticks = np.array([60.0 if "USD" in p else 30.0 for p in plist]) * minutes**0.7
    spread_base = np.array([BASE_SPREAD_PIPS[p] * pip_size(p) for p in plist])
    pair_rngs = [np.random.default_rng([seed, PAIRS.index(p)]) for p in plist]

    out_parts: list[pd.DataFrame] = []
    reg_parts: list[np.ndarray] = []
    for c0 in range(0, n_total, CHUNK_BARS):
        idx = index[c0 : c0 + CHUNK_BARS]
        n = len(idx)
        season = _season(idx) if minutes < 60 * 24 else np.ones(n)
        reg_ix = regime.path(n)
        reg_parts.append(reg_ix)
        reg = _REGIME_MULT[reg_ix]
        # log-OU stochastic volatility per currency
        eps_h = rng.normal(0, h_sd * np.sqrt(1 - phi_h**2), (n, ncur))
        if zi_h is None:
            zi_h = (phi_h * h)[None, :]
        h_path, zi_h = lfilter([1.0], [1.0, -phi_h], eps_h, axis=0, zi=zi_h)
        scale = sig[None, :] * (season * reg)[:, None] * np.exp(h_path - 0.5 * h_sd**2)
        # intrabar correlated sub-steps
        z = rng.standard_normal((n, SUBSTEPS, ncur)) @ chol.T
        if tail_df is not None:  # Student-t bars: normal / sqrt(chi2/df), unit variance
            w = np.sqrt((tail_df - 2.0) / extra.chisquare(tail_df, (n, 1, ncur)))
            z = z * w
        sub = z * (scale[:, None, :] / np.sqrt(SUBSTEPS))
        noise = sub.sum(axis=1)  # (n, ncur): the bar's shock n_c(t)
        # m(t) = lam m(t-1) + (1-lam) n(t); drift(t) = kappa m(t-1)
        m_path, zi_m = lfilter([1 - lam], [1.0, -lam], noise, axis=0, zi=(lam * m)[None, :])
        m_prev = np.vstack([m[None, :], m_path[:-1]])
        if signal_on_share < 1.0:
            on = np.empty(n)
            flips = extra.random(n)
            for i in range(n):  # two-state Markov chain, bar by bar
                sig_on = float(flips[i] >= p_off) if sig_on else float(flips[i] < p_on)
                on[i] = sig_on
            drift = kappa * m_prev * on[:, None]
        else:
            drift = kappa * m_prev
        if signal_cycle_days is not None:
            c = signal_coefficient(idx, t0, signal_cycle_days, signal_cycle_low)
            drift = drift * c[:, None]
        m = m_path[-1].copy()
        del zi_m
        # cumulative path at sub-steps: x(t-1) + drift*(k/K) + cumsum(sub)
        incr = drift[:, None, :] * (1.0 / SUBSTEPS) + sub
        bar_total = incr.sum(axis=1)
        close_x = x[None, :] + np.cumsum(bar_total, axis=0)
        open_x = np.vstack([x[None, :], close_x[:-1]])
        path_x = open_x[:, None, :] + np.cumsum(incr, axis=1)
        x = close_x[-1].copy()

        # pairs
        d_open = open_x[:, base_ix] - open_x[:, quote_ix]
        d_close = close_x[:, base_ix] - close_x[:, quote_ix]
        d_path = path_x[:, :, base_ix] - path_x[:, :, quote_ix]
        d_hi = np.maximum(d_path.max(axis=1), d_open)
        d_lo = np.minimum(d_path.min(axis=1), d_open)
        vol_ratio = (scale[:, base_ix] + scale[:, quote_ix]) / (sig[base_ix] + sig[quote_ix])[
            None, :
        ]
        roll = minutes_from_rollover(idx)
        roll_mult = 1.0 + 5.0 * np.exp(-((roll / max(8.0, minutes)) ** 2))
        thin = (1.0 / np.sqrt(season))[:, None]
        # microstructure noise from one stream per pair, so a pair's bars do not depend on
        # which other pairs were requested
        noise_sp = np.empty((n, len(plist)))
        ticks = np.empty((n, len(plist)))
        lam_ticks = base_ticks[None, :] * vol_ratio * np.sqrt(season)[:, None]
        for j, prng in enumerate(pair_rngs):
            noise_sp[:, j] = prng.normal(0, 0.15, n)
            ticks[:, j] = 1 + prng.poisson(lam_ticks[:, j])
        spread = (
            spread_base[None, :]
            * roll_mult[:, None]
            * thin
            * np.sqrt(reg)[:, None]
            * np.exp(noise_sp)
        )
        k = len(plist)
        part = pd.DataFrame(
            {
                "pair": np.repeat(np.array(plist, dtype=object)[None, :], n, axis=0).T.ravel(),
                "ts": np.tile(idx.to_numpy(), k),
                "open": np.exp(d_open).T.ravel(),
                "high": np.exp(d_hi).T.ravel(),
                "low": np.exp(d_lo).T.ravel(),
                "close": np.exp(d_close).T.ravel(),
                "volume": ticks.T.ravel().astype("float64"),
                "spread": spread.T.ravel(),
            }
        )
        out_parts.append(part)
        if progress is not None:
            progress(min(c0 + n, n_total), n_total)
    bars = normalize_bars(pd.concat(out_parts, ignore_index=True))
    # exp() rounding can put open/close a hair outside [low, high]; clamp to keep OHLC exact
    bars["high"] = np.maximum.reduce([bars["high"], bars["open"], bars["close"]])
    bars["low"] = np.minimum.reduce([bars["low"], bars["open"], bars["close"]])
    res = SimResult(bars=bars, signal_strength=float(signal_strength), kappa=kappa, seed=seed)
    res.regimes = pd.Series(np.concatenate(reg_parts), index=index, name="regime")
    if signal_strength > 0:
        for p, g in bars.groupby("pair", sort=False):
            close = g["close"].to_numpy()
            y = realized_target(close)
            yhat = oracle_prediction(close, signal_strength, span=int(signal_span))
            ok = np.isfinite(y)
            ss = np.sum((y[ok] - y[ok].mean()) ** 2)
            res.oracle_r2[str(p)] = (
                float(1 - np.sum((y[ok] - yhat[ok]) ** 2) / ss) if ss > 0 else float("nan")
            )
    return res


def signal_coefficient(
    index: pd.DatetimeIndex, start: Any, cycle_days: float, low: float = -1.0
) -> np.ndarray:
    """Multiplier of the momentum coefficient at each bar of a drifting market
    (``generate(..., signal_cycle_days=..., signal_cycle_low=...)``):
    ``low + (1 - low) * (1 + cos(2π (t - start) / cycle_days)) / 2`` (``cos`` for low = -1)."""
    days = (pd.DatetimeIndex(index) - to_utc(start)) / pd.Timedelta(days=1)
    cos = np.cos(2.0 * np.pi * np.asarray(days, dtype=np.float64) / float(cycle_days))
    return low + (1.0 - low) * (1.0 + cos) / 2.0


def all_pairs() -> list[str]:
    return list(PAIRS)
