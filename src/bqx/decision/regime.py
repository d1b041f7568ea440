"""Market regime detector: a 3-state Gaussian HMM per pair with FILTERED posteriors.

Why: a forecast is made in a market state; a desk wants to know it (and to trust a signal
less when the state is unclear). The detector is a Gaussian hidden Markov model
(``hmmlearn``) per pair on two causal observations, taken every ``stride`` trading-time bars
(an hour of M1 bars) over non-overlapping windows of ``window`` bars:

* ``z``: the pair's log return over the window divided by its realised volatility over the
  same bars times sqrt(window) (unitless, ~N(0, 1) in every volatility regime: direction);
* ``mvol``: the MARKET's log realised volatility: the mean, over the pairs present (all 28 in
  a full home), of each pair's log RMS 1-bar return over the window minus that pair's
  training mean at the bar's UTC hour (the intraday session curve and the pair's level
  removed).

Why the market's volatility and not the pair's own: volatility regimes are common to the
market (in the simulator exactly: one regime multiplies every currency), while each
currency's own stochastic volatility (log-OU, half-life ~6 h) moves a single pair's
volatility as much as the regime does; averaging 28 pairs (8 currencies) cancels most of
it. On one pair's own volatility the filtered state matched the simulator's regime in 0.40
of held-out bars (majority class 0.54); on the market's, see docs/performance.md.
Why hourly non-overlapping windows: the HMM assumes observations independent given the
state; minute-by-minute overlapping 60-bar windows are nearly identical neighbours, which
made the fit chase the noise.

Causality. hmmlearn's ``predict_proba`` returns SMOOTHED posteriors p(s_t | o_1..o_T), which
use bars after t (lookahead). This module never calls it: the probability at bar t is the
FILTERED posterior of the chain of observations at bars t, t - stride, ..., t - (B-1) stride
(``B`` = ``burn_in`` hourly steps), by our own forward pass started from the chain's
stationary distribution. A fixed burn-in makes the value a function of bars <= t only,
identical whether the data end at t or later, and identical in batch
(:meth:`RegimeModel.filter`) and in serving (:meth:`RegimeModel.at`) whatever history the
caller holds (>= ``(B - 1) * stride + window + 1`` bars, within the features' lookback).
Observations that are undefined (warm-up, gaps) contribute no evidence (likelihood 1).

Labels are deterministic so they do not swap between refits: the state with the lowest
mean market volatility is ``sideways``; of the other two, the one with the higher mean
``z`` is ``bull``, the other ``bear``. ``vol_rank`` (0 = calmest) is stored too: the
simulator's regimes differ in volatility only, so recovery is measured by volatility rank
(the labelling rule, no look at the truth).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bqx.errors import BqxError, NoDataError

log = logging.getLogger(__name__)

LABELS: tuple[str, str, str] = ("bull", "bear", "sideways")
#: bars of one observation window, and bars between two observations of the chain
OBS_WINDOW = 60
STRIDE = 60
#: forward-pass steps (observations) before bar t: 20 hours of M1 bars
BURN_IN = 20
#: maximum training observations the HMM sees (the most recent ones of the training segment)
MAX_FIT_ROWS = 5_000


class RegimeError(BqxError):
    """The regime model cannot be fitted or evaluated."""


def _hour(ts_ns: np.ndarray) -> np.ndarray:
    return ((np.asarray(ts_ns, dtype=np.int64) // 3_600_000_000_000) % 24).astype(np.int64)


def _as2d(close: np.ndarray) -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    return c[:, None] if c.ndim == 1 else c


def log_vol(close: np.ndarray, window: int = OBS_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(log RMS 1-bar log return over the last ``window`` bars, log return over them), both
    (n, k); NaN without a full window of finite returns. Prefix cumulative sums: a prefix of
    the input gives bit-identical rows."""
    c = _as2d(close)
    n, k = c.shape
    lv = np.full((n, k), np.nan)
    ret = np.full((n, k), np.nan)
    if n <= window:
        return lv, ret
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.log(c)
    r = np.diff(lc, axis=0, prepend=np.full((1, k), np.nan))
    bad = ~np.isfinite(r)
    r2 = np.where(bad, 0.0, r * r)
    cs2 = np.vstack([np.zeros((1, k)), np.cumsum(r2, axis=0)])
    cbad = np.vstack([np.zeros((1, k), dtype=np.int64), np.cumsum(bad, axis=0)])
    t = np.arange(window, n)
    nbad = cbad[t + 1] - cbad[t + 1 - window]
    ms = (cs2[t + 1] - cs2[t + 1 - window]) / window
    with np.errstate(divide="ignore", invalid="ignore"):
        v = 0.5 * np.log(ms)
    ok = (nbad == 0) & np.isfinite(v)
    lv[t] = np.where(ok, v, np.nan)
    ret[t] = np.where(ok, lc[t] - lc[t - window], np.nan)
    return lv, ret


def observations(
    close: np.ndarray,
    ts_ns: np.ndarray,
    j: int = 0,
    window: int = OBS_WINDOW,
    level: np.ndarray | None = None,
) -> np.ndarray:
    """(n, 2) causal observations at every bar: [z of pair column ``j``, market log vol].

    ``close``: (n, k) closes of k pairs (or (n,) for one); ``level``: (24, k) each pair's
    training mean log vol by UTC hour (None: zeros). Row t uses bars t-window .. t only. A
    row is NaN when pair ``j``'s window is incomplete or no pair has a complete one.
    """
    c = _as2d(close)
    lv, ret = log_vol(c, window)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = ret[:, j] / (np.exp(lv[:, j]) * math.sqrt(window))
    if level is not None and len(c):
        lv = lv - level[_hour(np.asarray(ts_ns))]
    fin = np.isfinite(lv)
    cnt = fin.sum(axis=1)
    mv = np.where(fin, lv, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    mv[cnt == 0] = np.nan
    out = np.column_stack([z, mv])
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


def _stationary(A: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eig(A.T)
    i = int(np.argmin(np.abs(w - 1.0)))
    p = np.abs(np.real(v[:, i]))
    return p / p.sum()


@dataclass
class RegimeModel:
    """A fitted 3-state Gaussian HMM with deterministic labels (pickled with the model).

    ``pairs``: the columns of the closes it reads (its own pair first; the others feed the
    market volatility); ``level``: (24, len(pairs)) training mean log vol by UTC hour."""

    means: np.ndarray  # (3, 2): [mean z, mean market log vol] of each state
    covars: np.ndarray  # (3, d, d) full covariances of the emitted columns ``dims``
    transmat: np.ndarray  # (3, 3), per ``stride`` bars
    labels: list[str]  # label of each state index
    vol_rank: list[int]  # 0 = calmest
    pairs: list[str] = field(default_factory=lambda: ["?"])
    level: np.ndarray = field(default_factory=lambda: np.zeros((24, 1)))
    window: int = OBS_WINDOW
    stride: int = STRIDE
    burn_in: int = BURN_IN
    #: observation columns the emissions model (1 = market vol only; 0, 1 = with z)
    dims: list[int] = field(default_factory=lambda: [0, 1])
    fit_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._prep()

    def _prep(self) -> None:
        self.start = _stationary(self.transmat)
        self._prec = np.linalg.inv(self.covars)
        _, logdet = np.linalg.slogdet(self.covars)
        self._lognorm = -0.5 * (logdet + len(self.dims) * math.log(2 * math.pi))
        self._emean = np.asarray(self.means, dtype=np.float64)[:, self.dims]
        self._order = [self.labels.index(lab) for lab in LABELS]
        self._A = [[float(x) for x in row] for row in self.transmat]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "dims" not in state:  # fitted by the one-pair, minute-step detector: not usable
            self.legacy = True
            return
        self._prep()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @property
    def history_bars(self) -> int:
        """Bars up to and including t that the value at t reads."""
        return (self.burn_in - 1) * self.stride + self.window + 1

    def columns(self, close: np.ndarray, pairs: Sequence[str] | None) -> np.ndarray:
        """``close`` (n, len(pairs)) rearranged to this model's ``pairs`` (absent: NaN)."""
        c = _as2d(close)
        if pairs is None:
            if c.shape[1] != len(self.pairs):
                raise RegimeError(f"closes of {c.shape[1]} pairs for a model of {self.pairs}")
            return c
        ix = {p: i for i, p in enumerate(pairs)}
        if self.pairs[0] not in ix:
            raise RegimeError(f"no closes of {self.pairs[0]}")
        out = np.full((len(c), len(self.pairs)), np.nan)
        for k, p in enumerate(self.pairs):
            if p in ix:
                out[:, k] = c[:, ix[p]]
        return out

    # ---- likelihoods and the forward pass --------------------------------------------
    def likelihood(self, obs: np.ndarray) -> np.ndarray:
        """(n, 3) emission likelihoods scaled per row (max 1); NaN rows -> all ones."""
        d = obs[:, None, self.dims] - self._emean[None, :, :]  # (n, 3, d)
        q = np.einsum("nki,kij,nkj->nk", d, self._prec, d)
        ll = self._lognorm[None, :] - 0.5 * q
        bad = ~np.isfinite(ll).all(axis=1)
        ll[bad] = 0.0
        ll -= ll.max(axis=1, keepdims=True)
        return np.exp(ll)

    def observe(self, close: np.ndarray, ts_ns: np.ndarray, pairs: Sequence[str] | None) -> Any:
        if getattr(self, "legacy", False):
            raise RegimeError(
                "regime model fitted by an older bqx (one pair's own volatility)",
                hint="retrain the pair to refit its regime model",
            )
        return observations(self.columns(close, pairs), ts_ns, 0, self.window, self.level)

    def filter(
        self, close: np.ndarray, ts_ns: np.ndarray, pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """(n, 3) filtered posteriors (state-index order) at every bar of ``close`` ((n, k)
        closes of ``pairs``, default this model's ``pairs``; ``ts_ns``: the bars' times,
        int64 ns UTC). Vectorised over bars: ``burn_in`` forward steps, each on all bars."""
        b = self.likelihood(self.observe(close, ts_ns, pairs))
        n, B, S = len(b), self.burn_in, self.stride
        pad = np.vstack([np.ones(((B - 1) * S, 3)), b])  # bars before the data: no evidence
        alpha = self.start[None, :] * pad[0:n]
        alpha /= alpha.sum(axis=1, keepdims=True)
        for k in range(1, B):
            alpha = (alpha @ self.transmat) * pad[k * S : k * S + n]
            alpha /= alpha.sum(axis=1, keepdims=True)
        return alpha

    def at(
        self, close: np.ndarray, ts_ns: np.ndarray, pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """Filtered posterior (state-index order) at the LAST bar of ``close``.

        Same number as ``filter(close, ts_ns, pairs)[-1]`` (to float rounding of the window
        sums); reads only the last :attr:`history_bars` bars: ~0.3 ms."""
        k = self.history_bars
        tail = _as2d(close)[-k:]
        obs = self.observe(tail, np.asarray(ts_ns)[-k:], pairs)
        S, B = self.stride, self.burn_in
        idx = [len(obs) - 1 - i * S for i in range(B - 1, -1, -1)]
        b = self.likelihood(np.vstack([obs[i] if i >= 0 else np.full(2, np.nan) for i in idx]))
        A = self._A
        a0, a1, a2 = (float(x) for x in self.start)
        rows = b.tolist()
        e = rows[0]
        a0, a1, a2 = a0 * e[0], a1 * e[1], a2 * e[2]
        s = a0 + a1 + a2
        a0, a1, a2 = a0 / s, a1 / s, a2 / s
        for e in rows[1:]:
            n0 = (a0 * A[0][0] + a1 * A[1][0] + a2 * A[2][0]) * e[0]
            n1 = (a0 * A[0][1] + a1 * A[1][1] + a2 * A[2][1]) * e[1]
            n2 = (a0 * A[0][2] + a1 * A[1][2] + a2 * A[2][2]) * e[2]
            s = n0 + n1 + n2
            a0, a1, a2 = n0 / s, n1 / s, n2 / s
        return np.array([a0, a1, a2])

    # ---- presentation -----------------------------------------------------------------
    def describe(self, p: np.ndarray) -> dict[str, Any]:
        """``{probabilities: {bull, bear, sideways}, entropy_bits, state}`` for one row."""
        probs = {lab: float(p[i]) for lab, i in zip(LABELS, self._order, strict=True)}
        pp = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
        ent = float(-(pp * np.log2(pp)).sum())
        i = int(np.argmax(p))
        return {
            "probabilities": probs,
            "entropy_bits": max(0.0, ent),
            "state": self.labels[i],
            "vol_rank": self.vol_rank[i],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "vol_rank": self.vol_rank,
            "means": self.means.round(6).tolist(),
            "transmat": self.transmat.round(6).tolist(),
            "pairs": self.pairs,
            "window": self.window,
            "stride": self.stride,
            "burn_in": self.burn_in,
            **self.fit_info,
        }


def label_states(means: np.ndarray) -> tuple[list[str], list[int]]:
    """Deterministic labels from the state means ([z-return, log vol]); see the module doc."""
    order_vol = np.argsort(means[:, 1], kind="stable")
    vol_rank = [0, 0, 0]
    for r, k in enumerate(order_vol):
        vol_rank[int(k)] = r
    side = int(order_vol[0])
    rest = [k for k in range(3) if k != side]
    bull = max(rest, key=lambda k: (means[k, 0], -k))
    labels = ["bear"] * 3
    labels[side] = "sideways"
    labels[bull] = "bull"
    return labels, vol_rank


def hour_level(close: np.ndarray, ts_ns: np.ndarray, window: int = OBS_WINDOW) -> np.ndarray:
    """(24, k): each pair's mean log vol by UTC hour of the bar (hours with < 30 finite
    values: the pair's overall mean)."""
    lv, _ = log_vol(close, window)
    hours = _hour(ts_ns)
    k = lv.shape[1]
    level = np.zeros((24, k))
    for j in range(k):
        fin = np.isfinite(lv[:, j])
        overall = float(lv[fin, j].mean()) if fin.any() else 0.0
        for h in range(24):
            sel = fin & (hours == h)
            level[h, j] = lv[sel, j].mean() if sel.sum() >= 30 else overall
    return level


def fit_regime(
    close: np.ndarray,
    ts_ns: np.ndarray,
    pairs: Sequence[str] | None = None,
    *,
    pair: str | None = None,
    window: int = OBS_WINDOW,
    stride: int = STRIDE,
    burn_in: int = BURN_IN,
    n_iter: int = 100,
    restarts: int = 3,
    seed: int = 0,
    max_rows: int = MAX_FIT_ROWS,
    return_in_state: bool = False,
) -> RegimeModel:
    """Fit ``pair``'s HMM on the closes of a TRAINING segment: ``close`` (n, k) of ``pairs``
    (``pair`` defaults to the first; a 1-D ``close`` is that pair alone). Best
    log-likelihood of ``restarts`` EM runs (hmmlearn's k-means start with different seeds),
    ``n_iter`` EM iterations each, on the chain of observations every
    ``stride`` bars ending at the last bar (at most ``max_rows`` of them).

    ``return_in_state`` False (default): the emissions model the market volatility only and
    each state's mean ``z`` (for the bull / bear labels) is its posterior-weighted mean over
    the training observations, and the states share one variance ("tied": with a free
    variance per state EM preferred to split the calm regime into a narrow and a wide state
    and to leave the rare turbulent one out). True: the emissions are 2-D [z, market vol]
    with full covariances. Why the default:
    on the simulator (volatility regimes, no directional ones) EM with z in the emissions
    split states by return direction in half of the pairs and recovered the volatility
    regime at chance (docs/performance.md, decision layer)."""
    from hmmlearn.hmm import GaussianHMM

    c = _as2d(close)
    plist = list(pairs) if pairs is not None else [pair or "?"] * c.shape[1]
    own = pair or plist[0]
    if own not in plist or len(plist) != c.shape[1]:
        raise RegimeError(f"closes of {c.shape[1]} columns named {plist} for {own}")
    j = plist.index(own)
    order = [j] + [i for i in range(len(plist)) if i != j]
    c = c[:, order]
    plist = [plist[i] for i in order]
    level = hour_level(c, ts_ns, window)
    raw = observations(c, ts_ns, 0, window, level)
    idx = np.arange(len(c) - 1, window - 1, -stride)[::-1]
    obs = raw[idx]
    obs = obs[np.isfinite(obs).all(axis=1)][-max_rows:]
    if len(obs) < 30:
        raise NoDataError(
            f"{len(obs)} usable observations (one every {stride} bars) to fit the regime "
            "model; need at least 30",
            hint="train on a longer history",
        )
    dims = [0, 1] if return_in_state else [1]
    t0 = time.perf_counter()
    best: Any = None
    best_score = -np.inf
    scores = []
    for k in range(restarts):
        m = GaussianHMM(
            n_components=3,
            covariance_type="full" if return_in_state else "tied",
            n_iter=n_iter,
            tol=1e-4,
            random_state=seed + k,
            min_covar=1e-6,
        )
        m.fit(obs[:, dims])
        sc = float(m.score(obs[:, dims]))
        scores.append(sc)
        if np.isfinite(sc) and sc > best_score:
            best, best_score = m, sc
    if best is None:
        raise RegimeError("every HMM restart failed to converge to a finite likelihood")
    if return_in_state:
        means = np.asarray(best.means_, dtype=np.float64)
    else:  # smoothed posteriors are fine here: labelling uses the training segment only
        w = best.predict_proba(obs[:, dims])
        zbar = (w * obs[:, [0]]).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-12)
        means = np.column_stack([zbar, np.asarray(best.means_, dtype=np.float64)[:, 0]])
    labels, vol_rank = label_states(means)
    return RegimeModel(
        means=means,
        covars=np.asarray(best.covars_, dtype=np.float64),
        transmat=np.asarray(best.transmat_, dtype=np.float64),
        labels=labels,
        vol_rank=vol_rank,
        pairs=plist,
        level=level,
        window=window,
        stride=stride,
        burn_in=burn_in,
        dims=dims,
        fit_info={
            "rows": len(obs),
            "pairs_in_market_vol": len(plist),
            "restarts": restarts,
            "n_iter": n_iter,
            "loglik_per_row": best_score / len(obs),
            "restart_scores": [s / len(obs) for s in scores],
            "converged": bool(best.monitor_.converged),
            "fit_seconds": round(time.perf_counter() - t0, 3),
        },
    )


def uncertainty_scale(entropy_bits: float, floor: float = 0.0) -> float:
    """Multiplier for signal strength: 1 at certainty, ``floor`` at maximal entropy
    (log2(3) bits); linear in the normalised entropy."""
    h = min(max(entropy_bits / math.log2(3), 0.0), 1.0)
    return floor + (1.0 - floor) * (1.0 - h)


class RegimeTracker:
    """Serving side: the regime at a pair's as-of bar, cached per (pair, bar, model).

    A cache miss costs one :meth:`RegimeModel.at` (~0.5 ms, once per pair per bar); a hit is
    a dict lookup. It also follows each pair's entropy across the bars it is asked about and
    raises a ``regime_entropy`` alert (via ``StateDB.raise_alert``, on a background thread so
    the request never waits for the database) when the entropy has stayed above
    ``entropy_alert_bits`` for ``entropy_alert_minutes`` of bar time.
    """

    CACHE = 4096

    def __init__(self, settings: Any, state: Any = None) -> None:
        self.settings = settings  # RegimeSettings
        self._state = state  # callable returning the StateDB (lazy)
        self._cache: dict[tuple[str, int, int], dict[str, Any]] = {}
        self._high_since: dict[str, int] = {}
        self._alerted: dict[str, int] = {}
        self._lock = threading.Lock()

    def at(self, model: RegimeModel | None, panel: Any, pair: str, row: int) -> dict | None:
        """``describe()`` of the filtered posterior of ``pair`` at panel row ``row``."""
        if model is None or not self.settings.enabled:
            return None
        ts = int(panel.ts[row])
        key = (pair, ts, id(model))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        lo = max(0, row + 1 - model.history_bars)
        d = model.describe(model.at(panel.close[lo : row + 1], panel.ts[lo : row + 1], panel.pairs))
        with self._lock:
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[key] = d
        self._follow_entropy(pair, ts, d["entropy_bits"])
        return d

    def for_prediction(self, service: Any, fv: Any, art: Any) -> dict | None:
        """The regime for a served decision (``fv``: its FeatureVector); None without a
        fitted regime model. Never raises on the request path: a failure is logged."""
        model = getattr(art, "regime", None)
        if model is None or not self.settings.enabled:
            return None
        try:
            snap, _ = service._snapshot_for(fv.asof)
            row = snap.panel.row_at_or_before(fv.asof, fv.pair)
            return self.at(model, snap.panel, fv.pair, row)
        except Exception:
            log.warning("regime unavailable for %s at %s", fv.pair, fv.asof, exc_info=True)
            return None

    def scale(self, strength: float, regime: dict | None) -> float:
        """Signal strength scaled down by regime uncertainty (setting ``scale_signal``)."""
        if regime is None or not self.settings.scale_signal:
            return strength
        return strength * uncertainty_scale(regime["entropy_bits"], self.settings.scale_floor)

    def _follow_entropy(self, pair: str, ts: int, ent: float) -> None:
        s = self.settings
        if ent <= s.entropy_alert_bits:
            self._high_since.pop(pair, None)
            return
        since = self._high_since.setdefault(pair, ts)
        minutes = (ts - since) / 60e9
        if minutes < s.entropy_alert_minutes or self._alerted.get(pair) == since:
            return
        self._alerted[pair] = since
        if self._state is None:
            return
        msg = (
            f"{pair} regime entropy above {s.entropy_alert_bits:g} bits for {minutes:.0f} min "
            f"(now {ent:.3f} bits): the market state is unclear"
        )
        threading.Thread(target=self._raise, args=(pair, msg), daemon=True).start()

    def _raise(self, pair: str, msg: str) -> None:
        try:
            self._state().raise_alert("regime_entropy", msg, severity="warning", pair=pair)
        except Exception:
            log.warning("could not raise the regime entropy alert", exc_info=True)


#: The last market panel read for a training window (one entry): ``bqx train --all`` fits
#: one regime model per pair on the same window of every pair's bars, so a worker process
#: reads and aligns them once instead of once per pair (2.9 s each on 4 months x 28 pairs).
_MARKET: list[Any] = [None, None]  # [key, (close, ts, pairs)]
_MARKET_LOCK = threading.Lock()


def _market(store: Any, start: Any, end: Any, settings: Any) -> tuple[Any, Any, list[str]]:
    """(close, ts, pairs) of every pair's bars in ``[start, end]`` through the serving Panel,
    cached on the store's fingerprint of that window (any changed bar there reads again)."""
    from bqx.features.panel import Panel

    key = (
        getattr(store, "url", id(store)),
        str(start),
        str(end),
        str(settings.interval),
        settings.max_ffill_bars,
        store.fingerprint(start, end),
    )
    with _MARKET_LOCK:
        if _MARKET[0] == key:
            return _MARKET[1]
    bars = store.read(None, start, end)  # every pair: the market's volatility
    panel = Panel.from_bars(bars, interval=settings.interval, max_ffill=settings.max_ffill_bars)
    close, ts = np.array(panel.close), np.array(panel.ts)
    close.setflags(write=False)  # shared by later fits: nobody may change it in place
    ts.setflags(write=False)
    value = (close, ts, list(panel.pairs))
    with _MARKET_LOCK:
        _MARKET[:] = [key, value]
    return value


def fit_for_artifact(art: Any, settings: Any, store: Any = None) -> RegimeModel | None:
    """Fit the regime model on the bars (of every pair in the store: the market's
    volatility is an input) of the artifact's TRAINING segment only
    (``art.data_window['train']``) and attach it (``art.regime``): it is then stored, and
    versioned, with the model. Bars come through the same trading-time Panel (fill policy)
    as serving. A failure leaves ``art.regime = None`` with a warning: the forecast model is
    still usable, its predictions just carry ``regime: null``."""
    window = (art.data_window or {}).get("train") or []
    if len(window) != 2:
        return None
    try:
        if store is None:
            from bqx.data.store import open_store

            store = open_store(settings=settings)
        close, ts, pairs = _market(store, window[0], window[1], settings)
        rs = settings.regime
        art.regime = fit_regime(
            close,
            ts,
            pairs,
            pair=art.pair,
            n_iter=rs.n_iter,
            restarts=rs.restarts,
            max_rows=rs.fit_rows,
            return_in_state=rs.return_in_state,
        )
    except Exception:
        log.warning("regime model not fitted for %s", art.pair, exc_info=True)
        art.regime = None
    return art.regime
