"""Market regime detector: a 3-state Gaussian HMM per pair with FILTERED posteriors.

Why: a forecast is made in a market state; a desk wants to know it (and to trust a signal
less when the state is unclear). The detector is a Gaussian hidden Markov model
(``hmmlearn``) on two causal observations of a pair's closes, in trading-time bars:

* ``ret``: the log return over the last ``window`` bars, in basis points;
* ``logvol``: the log of the realised per-bar volatility (RMS of 1-bar log returns) over the
  last ``window`` bars (log of a fraction).

Causality. hmmlearn's ``predict_proba`` returns SMOOTHED posteriors p(s_t | o_1..o_T), which
use bars after t (lookahead). This module never calls it: the probabilities at bar t are the
FILTERED posteriors p(s_t | o_{t-B+1}..o_t) computed by our own forward pass over a fixed
burn-in of ``B`` bars ending at t, started from the chain's stationary distribution. A fixed
burn-in makes the value a function of bars <= t only, identical whether the data end at t or
later, and identical in batch (:meth:`RegimeModel.filter`) and in serving
(:meth:`RegimeModel.at`) whatever history the caller holds (>= B + window bars). Bars whose
observation is undefined (warm-up, gaps) contribute no evidence (likelihood 1).

Labels are deterministic so they do not swap between refits: the state with the lowest
mean volatility is ``sideways``; of the other two, the one with the higher mean return is
``bull``, the other ``bear``. ``vol_rank`` (0 = calmest) is stored too: the simulator's
regimes differ in volatility only, so recovery is measured by volatility rank.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bqx.errors import BqxError, NoDataError

log = logging.getLogger(__name__)

LABELS: tuple[str, str, str] = ("bull", "bear", "sideways")
#: default observation window and forward-pass burn-in, in bars
OBS_WINDOW = 60
#: bars of the (volatility-normalised) return observation
RET_WINDOW = 60
BURN_IN = 240
#: maximum training rows the HMM sees (the most recent ones of the training segment)
MAX_FIT_ROWS = 5_000


class RegimeError(BqxError):
    """The regime model cannot be fitted or evaluated."""


def _hour(ts_ns: np.ndarray) -> np.ndarray:
    return ((np.asarray(ts_ns, dtype=np.int64) // 3_600_000_000_000) % 24).astype(np.int64)


def observations(
    close: np.ndarray,
    ts_ns: np.ndarray,
    window: int = OBS_WINDOW,
    season: np.ndarray | None = None,
) -> np.ndarray:
    """(n, 2) causal observations at every bar: [z-return, deseasonalised log vol].

    * z-return: the log return over the last ``window`` bars divided by the realised
      volatility over the same bars times sqrt(window) (unitless, ~N(0, 1) in every
      volatility regime, so direction and volatility are separate dimensions);
    * log vol: log of the RMS 1-bar log return over the window minus ``season[hour]``
      (the training segment's mean by UTC hour of the bar: the intraday session curve
      would otherwise swamp the regime).

    Row t uses bars t-window .. t only (prefix cumulative sums, so a prefix of the input
    gives bit-identical rows). Rows without a full window or with NaN closes are NaN.
    """
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    out = np.full((n, 2), np.nan)
    if n <= window:
        return out
    lc = np.log(c)
    r = np.diff(lc, prepend=np.nan)
    bad = ~np.isfinite(r)
    r2 = np.where(bad, 0.0, r * r)
    cs2 = np.concatenate([[0.0], np.cumsum(r2)])
    cbad = np.concatenate([[0], np.cumsum(bad.astype(np.int64))])
    t = np.arange(window, n)
    nbad = cbad[t + 1] - cbad[t + 1 - window]
    ms = (cs2[t + 1] - cs2[t + 1 - window]) / window
    rw = min(RET_WINDOW, window)
    ret = lc[t] - lc[t - rw]
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = 0.5 * np.log(ms)
        z = ret / np.sqrt(ms * rw)
    if season is not None:
        lv = lv - season[_hour(np.asarray(ts_ns)[t])]
    ok = (nbad == 0) & np.isfinite(z) & np.isfinite(lv)
    out[t[ok], 0] = z[ok]
    out[t[ok], 1] = lv[ok]
    return out


def _stationary(A: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eig(A.T)
    i = int(np.argmin(np.abs(w - 1.0)))
    p = np.abs(np.real(v[:, i]))
    return p / p.sum()


@dataclass
class RegimeModel:
    """A fitted 3-state Gaussian HMM with deterministic labels (pickled with the model)."""

    means: np.ndarray  # (3, 2)
    covars: np.ndarray  # (3, 2, 2) full covariances
    transmat: np.ndarray  # (3, 3)
    labels: list[str]  # label of each state index
    vol_rank: list[int]  # 0 = calmest
    season: np.ndarray = field(default_factory=lambda: np.zeros(24))  # log vol by UTC hour
    window: int = OBS_WINDOW
    burn_in: int = BURN_IN
    fit_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._prep()

    def _prep(self) -> None:
        self.start = _stationary(self.transmat)
        self._prec = np.linalg.inv(self.covars)
        _, logdet = np.linalg.slogdet(self.covars)
        self._lognorm = -0.5 * (logdet + 2 * math.log(2 * math.pi))
        self._order = [self.labels.index(lab) for lab in LABELS]
        self._A = [[float(x) for x in row] for row in self.transmat]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._prep()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # ---- likelihoods and the forward pass --------------------------------------------
    def likelihood(self, obs: np.ndarray) -> np.ndarray:
        """(n, 3) emission likelihoods scaled per row (max 1); NaN rows -> all ones."""
        d = obs[:, None, :] - self.means[None, :, :]  # (n, 3, 2)
        q = np.einsum("nki,kij,nkj->nk", d, self._prec, d)
        ll = self._lognorm[None, :] - 0.5 * q
        bad = ~np.isfinite(ll).all(axis=1)
        ll[bad] = 0.0
        ll -= ll.max(axis=1, keepdims=True)
        return np.exp(ll)

    def filter(self, close: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
        """(n, 3) filtered posteriors (state-index order) at every bar of ``close``
        (``ts_ns``: the bars' times, int64 ns UTC).

        Vectorised over bars: ``burn_in`` forward steps, each on all windows at once.
        """
        b = self.likelihood(observations(close, ts_ns, self.window, self.season))
        n, B = len(b), self.burn_in
        pad = np.vstack([np.ones((B - 1, 3)), b])  # bars before the data: no evidence
        alpha = self.start[None, :] * pad[0:n]
        alpha /= alpha.sum(axis=1, keepdims=True)
        for k in range(1, B):
            alpha = (alpha @ self.transmat) * pad[k : k + n]
            alpha /= alpha.sum(axis=1, keepdims=True)
        return alpha

    def at(self, close: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
        """Filtered posterior (state-index order) at the LAST bar of ``close``.

        Same number as ``filter(close, ts_ns)[-1]`` (to float rounding of the window sums);
        needs only the last ``burn_in + window`` bars: ~0.5 ms of pure-Python 3-state steps.
        """
        k = self.burn_in + self.window
        tail = np.asarray(close, dtype=np.float64)[-k:]
        obs = observations(tail, np.asarray(ts_ns)[-k:], self.window, self.season)
        b = self.likelihood(obs[-self.burn_in :]).tolist()
        B = self.burn_in
        pad = [[1.0, 1.0, 1.0]] * (B - len(b)) + b
        A = self._A
        a0, a1, a2 = (float(x) for x in self.start)
        e = pad[0]
        a0, a1, a2 = a0 * e[0], a1 * e[1], a2 * e[2]
        s = a0 + a1 + a2
        a0, a1, a2 = a0 / s, a1 / s, a2 / s
        for e in pad[1:]:
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
            "window": self.window,
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


def fit_regime(
    close: np.ndarray,
    ts_ns: np.ndarray,
    *,
    window: int = OBS_WINDOW,
    burn_in: int = BURN_IN,
    n_iter: int = 100,
    restarts: int = 3,
    seed: int = 0,
    max_rows: int = MAX_FIT_ROWS,
) -> RegimeModel:
    """Fit the HMM on the closes of a TRAINING segment (best log-likelihood of ``restarts``
    EM runs with different seeds, ``n_iter`` EM iterations each)."""
    from hmmlearn.hmm import GaussianHMM

    raw = observations(close, ts_ns, window)
    hours = _hour(ts_ns)
    okr = np.isfinite(raw).all(axis=1)
    mean_lv = float(raw[okr, 1].mean()) if okr.any() else 0.0
    season = np.zeros(24)
    for h in range(24):
        sel = okr & (hours == h)
        if sel.sum() >= 30:
            season[h] = raw[sel, 1].mean() - mean_lv
    obs = raw.copy()
    obs[:, 1] -= season[hours]
    obs = obs[np.isfinite(obs).all(axis=1)][-max_rows:]
    if len(obs) < 50 * 3:
        raise NoDataError(
            f"{len(obs)} usable bars to fit the regime model; need at least 150",
            hint="train on a longer history",
        )
    t0 = time.perf_counter()
    best: Any = None
    best_score = -np.inf
    scores = []
    for k in range(restarts):
        m = GaussianHMM(
            n_components=3,
            covariance_type="full",
            n_iter=n_iter,
            tol=1e-3,
            random_state=seed + k,
            min_covar=1e-6,
        )
        m.fit(obs)
        sc = float(m.score(obs))
        scores.append(sc)
        if np.isfinite(sc) and sc > best_score:
            best, best_score = m, sc
    if best is None:
        raise RegimeError("every HMM restart failed to converge to a finite likelihood")
    labels, vol_rank = label_states(best.means_)
    return RegimeModel(
        means=np.asarray(best.means_, dtype=np.float64),
        covars=np.asarray(best.covars_, dtype=np.float64),
        transmat=np.asarray(best.transmat_, dtype=np.float64),
        labels=labels,
        vol_rank=vol_rank,
        season=season,
        window=window,
        burn_in=burn_in,
        fit_info={
            "rows": len(obs),
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
        j = panel.pairs.index(pair)
        lo = max(0, row + 1 - (model.burn_in + model.window))
        d = model.describe(model.at(panel.close[lo : row + 1, j], panel.ts[lo : row + 1]))
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


def fit_for_artifact(art: Any, settings: Any, store: Any = None) -> RegimeModel | None:
    """Fit the regime model on the bars of the artifact's TRAINING segment only
    (``art.data_window['train']``) and attach it (``art.regime``): it is then stored, and
    versioned, with the model. Bars come through the same trading-time Panel (fill policy)
    as serving. A failure leaves ``art.regime = None`` with a warning: the forecast model is
    still usable, its predictions just carry ``regime: null``."""
    from bqx.features.panel import Panel

    window = (art.data_window or {}).get("train") or []
    if len(window) != 2:
        return None
    try:
        if store is None:
            from bqx.data.store import open_store

            store = open_store(settings=settings)
        bars = store.read(art.pair, window[0], window[1])
        panel = Panel.from_bars(bars, interval=settings.interval, max_ffill=settings.max_ffill_bars)
        j = panel.pairs.index(art.pair)
        rs = settings.regime
        art.regime = fit_regime(
            panel.close[:, j],
            panel.ts,
            n_iter=rs.n_iter,
            restarts=rs.restarts,
            max_rows=rs.fit_rows,
        )
    except Exception:
        log.warning("regime model not fitted for %s", art.pair, exc_info=True)
        art.regime = None
    return art.regime
