"""Portfolio risk manager for FX: limits, VaR and the exact ``allowed_quantity`` of a trade.

Units. Quantities are signed base-currency units (whole units; + long); prices are quote per
base; every money amount (cash, equity, exposures, P&L, VaR) is in the account currency
(``[risk] account_currency``, default USD), converted with the latest closes of the USD
pairs (all 8 currencies have one among the 28 pairs).

Per position in BASEQUOTE with quantity q at mark price P: exposure e = q * P * v(QUOTE)
(the account-currency value of the base amount; v = value of one unit of a currency in the
account currency). FX-specific currency view: the position is long e of BASE and short e of
QUOTE, so long EURUSD and long EURJPY are both long EUR. Equity = cash + unrealised P&L
(q * (P - avg) * v(QUOTE)); today's P&L = realised today + unrealised.

Limits (seed 003 defaults, ``[risk]`` settings), each checked on the post-trade portfolio:
POSITION_LIMIT |e_pair| <= 25 % of equity; CURRENCY_EXPOSURE |net of each currency other
than the account currency| <= 50 %; LEVERAGE gross sum |e| <= 1.5 x equity; DAILY_LOSS
when today's loss exceeds 2 % of the start-of-day equity only trades that reduce gross
exposure pass; VAR_HISTORICAL / VAR_PARAMETRIC 1-day 95 % VaR <= 2 % of equity. A limit
that is ALREADY breached before the trade does not block a trade that does not worsen it
(risk-reducing trades stay possible): a check passes when value(after) <= max(limit,
value(before)).

VaR from the last ``var_window_bars`` 1-bar log returns of all pairs (covariance, or the
empirical scenarios), scaled to one day by sqrt(bars per trading day) (square-root-of-time;
i.i.d. bars assumed): parametric = z * sqrt(e' S e * bpd); historical = -(k-th smallest
scenario P&L) * sqrt(bpd), k = max(1, floor(n * (1 - level))).

``allowed_quantity`` is the largest whole quantity x in [0, requested] of the trade with
every check passing. Each check is piecewise constant in x between breakpoints (roots of
|a + b x| = T, of the VaR quadratic, and one per historical scenario); the answer is among
{requested, floor/ceil of every breakpoint}: screened vectorised, confirmed exactly.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from bqx.errors import BqxError
from bqx.universe import PAIRS, normalize_pair

MAX_QUANTITY = 1e12  # anything above is a typo (1e12 EUR is ~ world daily FX turnover / 7)
SIDES = {"BUY": 1, "SELL": -1}


class RiskInputError(BqxError, ValueError):
    """A risk check request with a bad field (the API answers 422 naming ``field``)."""

    def __init__(self, message: str, field_name: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field_name


@dataclass
class MarketData:
    """Latest prices and aligned 1-bar log returns of the pairs (returns rows, pairs cols)."""

    pairs: list[str]
    prices: dict[str, float]
    returns: np.ndarray
    bars_per_day: float

    def __post_init__(self) -> None:
        self.col = {p: i for i, p in enumerate(self.pairs)}
        self.cov = np.cov(self.returns, rowvar=False, ddof=1).reshape(
            len(self.pairs), len(self.pairs)
        )


def usd_value(ccy: str, prices: dict[str, float]) -> float:
    """Value of one unit of ``ccy`` in USD from the latest closes of the USD pairs."""
    if ccy == "USD":
        return 1.0
    if f"{ccy}USD" in prices:
        return prices[f"{ccy}USD"]
    if f"USD{ccy}" in prices:
        return 1.0 / prices[f"USD{ccy}"]
    raise RiskInputError(
        f"no price to convert {ccy} (needs {ccy}USD or USD{ccy} bars)", "price",
        hint="ingest bars of the USD pairs",
    )  # fmt: skip


def market_from_bars(bars: Any, interval: Any, max_ffill: int) -> MarketData:
    """MarketData from a long bar frame (the trading-time Panel, forward-fill policy)."""
    from bqx.features.panel import Panel

    panel = Panel.from_bars(bars, interval=interval, max_ffill=max_ffill)
    lc = np.log(panel.close)
    r = np.diff(lc, axis=0)
    r = r[np.isfinite(r).all(axis=1)]
    prices = {}
    for j, p in enumerate(panel.pairs):
        c = panel.close[:, j]
        ok = np.isfinite(c)
        if ok.any():
            prices[p] = float(c[ok][-1])
    bpd = 86400.0 / panel.interval.total_seconds()
    return MarketData(list(panel.pairs), prices, r, bpd)


@dataclass
class _Trade:
    i: int  # column of the pair in the market data
    a: float  # exposure of the pair before the trade
    b: float  # exposure change per unit traded (signed)
    base: str
    quote: str


class RiskEngine:
    """Pure computation over a portfolio snapshot and market data (no I/O)."""

    def __init__(self, settings: Any, portfolio: Any, market: MarketData) -> None:
        self.s = settings  # RiskSettings
        self.pf = portfolio
        self.m = market
        acct = settings.account_currency
        self.v = {c: usd_value(c, market.prices) / usd_value(acct, market.prices)
                  for c in {p[:3] for p in market.pairs} | {p[3:] for p in market.pairs} | {acct}}  # fmt: skip
        k = len(market.pairs)
        self.e = np.zeros(k)
        unreal = 0.0
        for pair, (q, avg) in portfolio.positions.items():
            if pair not in market.col:
                raise RiskInputError(
                    f"open position in {pair} but no {pair} bars to mark it", "positions"
                )
            P = market.prices[pair]
            self.e[market.col[pair]] = q * P * self.v[pair[3:]]
            unreal += q * (P - avg) * self.v[pair[3:]]
        self.unrealized = unreal
        self.equity = float(portfolio.cash) + unreal
        self.daily_pnl = float(portfolio.realized_pnl_today) + unreal
        self.z = float(norm.ppf(settings.var_level))
        self.sq = math.sqrt(market.bars_per_day)
        self.A = market.returns @ self.e  # scenario P&L per bar, before the trade
        n = len(self.A)
        self.k = max(1, math.floor(n * (1.0 - settings.var_level)))

    # ---- portfolio figures -----------------------------------------------------------
    def net_by_currency(self, e: np.ndarray) -> dict[str, float]:
        net: dict[str, float] = {}
        for j, p in enumerate(self.m.pairs):
            if e[j] != 0.0:
                net[p[:3]] = net.get(p[:3], 0.0) + e[j]
                net[p[3:]] = net.get(p[3:], 0.0) - e[j]
        return net

    def var(self, e: np.ndarray) -> tuple[float, float]:
        """(historical, parametric) 1-day VaR of exposures ``e`` in account currency."""
        pnl = self.m.returns @ e
        hist = -float(np.partition(pnl, self.k - 1)[self.k - 1]) * self.sq if len(pnl) else 0.0
        param = self.z * math.sqrt(max(float(e @ self.m.cov @ e), 0.0)) * self.sq
        return max(hist, 0.0), param

    def summary(self) -> dict[str, Any]:
        h, p = self.var(self.e)
        eq = self.equity
        return {
            "account_currency": self.s.account_currency,
            "equity": eq,
            "cash": float(self.pf.cash),
            "unrealized_pnl": self.unrealized,
            "daily_pnl": self.daily_pnl,
            "gross_exposure": float(np.abs(self.e).sum()),
            "gross_leverage": float(np.abs(self.e).sum() / eq) if eq > 0 else None,
            "net_by_currency": self.net_by_currency(self.e),
            "var_historical": h,
            "var_parametric": p,
            "var_level": self.s.var_level,
            "var_scenarios": len(self.A),
        }

    # ---- the check ---------------------------------------------------------------------
    def _trade(self, pair: str, side: str, price: float | None) -> _Trade:
        pair = normalize_pair(pair)
        if pair not in self.m.col:
            raise RiskInputError(f"no {pair} bars to price or risk the trade", "pair")
        s = SIDES[side]
        i = self.m.col[pair]
        P = price if price is not None else self.m.prices[pair]
        return _Trade(i, float(self.e[i]), s * P * self.v[pair[3:]], pair[:3], pair[3:])

    def _limits(self, tr: _Trade) -> list[tuple[str, str, float, float, float]]:
        """(code, name, before, limit, threshold) per check, values in account currency.

        ``threshold = max(limit, before)``: see the module doc (already-breached limits)."""
        s, E = self.s, self.equity
        out = []
        lim = s.max_position_frac * E
        out.append(("POSITION_LIMIT", "position", abs(tr.a), lim, max(lim, abs(tr.a))))
        net = self.net_by_currency(self.e)
        for c in (tr.base, tr.quote):
            if c == s.account_currency:
                continue
            lim = s.max_currency_net_frac * E
            b0 = abs(net.get(c, 0.0))
            out.append(("CURRENCY_EXPOSURE", f"currency_{c}", b0, lim, max(lim, b0)))
        g0 = float(np.abs(self.e).sum())
        lim = s.max_leverage * E
        out.append(("LEVERAGE", "gross_exposure", g0, lim, max(lim, g0)))
        start_eq = E - self.daily_pnl
        loss_lim = s.max_daily_loss_frac * start_eq
        if -self.daily_pnl > loss_lim:  # breached: only gross-reducing trades
            out.append(("DAILY_LOSS", "daily_loss", g0, g0, g0))
        h0, p0 = self.var(self.e)
        lim = s.max_var_frac * E
        out.append(("VAR_HISTORICAL", "var_historical", h0, lim, max(lim, h0)))
        out.append(("VAR_PARAMETRIC", "var_parametric", p0, lim, max(lim, p0)))
        return out

    def _values(self, tr: _Trade, x: float) -> dict[str, float]:
        """Post-trade value of every check for quantity ``x`` (exact, scalar)."""
        e = self.e.copy()
        e[tr.i] = tr.a + tr.b * x
        net = self.net_by_currency(e)
        h, p = self.var(e)
        gross = float(np.abs(e).sum())
        return {
            "position": abs(e[tr.i]),
            f"currency_{tr.base}": abs(net.get(tr.base, 0.0)),
            f"currency_{tr.quote}": abs(net.get(tr.quote, 0.0)),
            "gross_exposure": gross,
            "daily_loss": gross,
            "var_historical": h,
            "var_parametric": p,
        }

    def passes(self, tr: _Trade, x: float, limits: list | None = None) -> bool:
        limits = limits if limits is not None else self._limits(tr)
        vals = self._values(tr, x)
        return all(vals[name] <= thr for _, name, _, _, thr in limits)

    def _screen(self, tr: _Trade, limits: list, X: np.ndarray) -> np.ndarray:
        """Vectorised feasibility of candidate quantities ``X`` (may err at exact
        boundaries; :meth:`passes` confirms)."""
        ok = np.ones(len(X), dtype=bool)
        pos = np.abs(tr.a + tr.b * X)
        net = self.net_by_currency(self.e)
        g_other = float(np.abs(self.e).sum()) - abs(tr.a)
        for code, name, _, _, thr in limits:
            if code == "POSITION_LIMIT":
                ok &= pos <= thr
            elif code == "CURRENCY_EXPOSURE":
                c = name.split("_", 1)[1]
                sgn = 1.0 if c == tr.base else -1.0
                ok &= np.abs(net.get(c, 0.0) + sgn * tr.b * X) <= thr
            elif code in ("LEVERAGE", "DAILY_LOSS"):
                ok &= g_other + pos <= thr
            elif code == "VAR_PARAMETRIC":
                ok &= self._param_var_many(tr, X) <= thr
            elif code == "VAR_HISTORICAL":
                ok &= self._hist_count(tr, thr, X) <= self.k - 1
        return ok

    def _param_var_many(self, tr: _Trade, X: np.ndarray) -> np.ndarray:
        S = self.m.cov
        c0 = float(self.e @ S @ self.e)
        c1 = float(S[tr.i] @ self.e) * tr.b
        c2 = float(S[tr.i, tr.i]) * tr.b * tr.b
        return self.z * np.sqrt(np.maximum(c0 + 2 * c1 * X + c2 * X * X, 0.0)) * self.sq

    def _hist_prep(self, tr: _Trade, thr: float) -> tuple[np.ndarray, np.ndarray, int, float]:
        B = self.m.returns[:, tr.i] * tr.b
        A = self.A
        t = thr / self.sq  # 1-bar threshold: loss beyond it is a violation
        # scenario s violates when A + x B < -t
        with np.errstate(divide="ignore", invalid="ignore"):
            root = (-t - A) / B
        posb, negb = B > 0, B < 0
        always = int(np.sum((B == 0) & (-t > A)))
        return np.sort(root[posb]), np.sort(root[negb]), always, t

    def _hist_count(self, tr: _Trade, thr: float, X: np.ndarray) -> np.ndarray:
        rp, rn, always, _ = self._hist_prep(tr, thr)
        # B>0: violation when x < root; B<0: violation when x > root
        n_pos = len(rp) - np.searchsorted(rp, X, side="right")
        n_neg = np.searchsorted(rn, X, side="left")
        return always + n_pos + n_neg

    def _breakpoints(self, tr: _Trade, limits: list) -> np.ndarray:
        pts: list[float] = []
        net = self.net_by_currency(self.e)
        g_other = float(np.abs(self.e).sum()) - abs(tr.a)
        b = tr.b
        for code, name, _, _, thr in limits:
            if b == 0:
                break
            if code == "POSITION_LIMIT":
                pts += [(thr - tr.a) / b, (-thr - tr.a) / b]
            elif code == "CURRENCY_EXPOSURE":
                c = name.split("_", 1)[1]
                bb = b if c == tr.base else -b
                n0 = net.get(c, 0.0)
                pts += [(thr - n0) / bb, (-thr - n0) / bb]
            elif code in ("LEVERAGE", "DAILY_LOSS"):
                r = thr - g_other
                pts += [(r - tr.a) / b, (-r - tr.a) / b]
            elif code == "VAR_PARAMETRIC":
                S = self.m.cov
                c0 = float(self.e @ S @ self.e)
                c1 = float(S[tr.i] @ self.e) * b
                c2 = float(S[tr.i, tr.i]) * b * b
                rhs = (thr / (self.z * self.sq)) ** 2
                disc = c1 * c1 - c2 * (c0 - rhs)
                if c2 > 0 and disc >= 0:
                    sd = math.sqrt(disc)
                    pts += [(-c1 - sd) / c2, (-c1 + sd) / c2]
            elif code == "VAR_HISTORICAL":
                rp, rn, _, _ = self._hist_prep(tr, thr)
                pts += rp.tolist() + rn.tolist()
        return np.asarray(pts, dtype=np.float64)

    def allowed_quantity(self, tr: _Trade, quantity: int, limits: list | None = None) -> int:
        """The largest whole x in [0, quantity] passing every check (0 if none, incl. 0)."""
        limits = limits if limits is not None else self._limits(tr)
        bp = self._breakpoints(tr, limits)
        bp = bp[np.isfinite(bp)]
        cand = np.concatenate(
            [[float(quantity), 0.0], np.floor(bp), np.floor(bp) - 1, np.ceil(bp), np.ceil(bp) + 1]
        )
        cand = np.unique(np.clip(cand, 0.0, float(quantity)))[::-1]
        ok = self._screen(tr, limits, cand)
        for x in cand[ok]:
            if self.passes(tr, float(x), limits):
                return int(x)
        # the screen may reject an exact-boundary point the exact check accepts: scan the
        # rest in descending order (rare; bounded by the candidate count)
        for x in cand[~ok]:
            if self.passes(tr, float(x), limits):
                return int(x)
        return 0

    def check(self, pair: str, side: str, quantity: int, price: float | None = None) -> dict:
        """The full answer of ``POST /v1/risk/check``."""
        tr = self._trade(pair, side, price)
        if self.equity <= 0:
            return {
                "approved": False,
                "allowed_quantity": 0,
                "checks": [],
                "reasons": [{"code": "EQUITY", "message": f"equity {self.equity:.2f} <= 0"}],
                "portfolio": self.summary(),
            }
        limits = self._limits(tr)
        vals = self._values(tr, float(quantity))
        checks, reasons = [], []
        for code, name, before, lim, thr in limits:
            v = vals[name]
            passed = v <= thr
            checks.append(
                {
                    "code": code,
                    "name": name,
                    "before": before,
                    "after": v,
                    "limit": lim,
                    "utilisation": v / lim if lim > 0 else None,
                    "passed": bool(passed),
                }
            )
            if not passed:
                reasons.append(
                    {
                        "code": code,
                        "message": f"{name} would be {v:,.2f} {self.s.account_currency}, "
                        f"limit {lim:,.2f}",
                    }
                )
        approved = not reasons
        allowed = quantity if approved else self.allowed_quantity(tr, quantity, limits)
        return {
            "approved": approved,
            "allowed_quantity": int(allowed),
            "checks": checks,
            "reasons": reasons,
            "portfolio": self.summary(),
        }


def validate_request(body: dict[str, Any]) -> tuple[str, str, int, float | None]:
    """(pair, side, quantity, price) from a request body; RiskInputError names the field."""
    pair = body.get("pair")
    if not isinstance(pair, str) or not pair:
        raise RiskInputError("pair is required (e.g. 'EURUSD')", "pair")
    try:
        pair = normalize_pair(pair)
    except BqxError as e:
        raise RiskInputError(str(e), "pair") from None
    side = str(body.get("side", "")).upper()
    if side not in SIDES:
        raise RiskInputError("side must be BUY or SELL", "side")
    q = body.get("quantity")
    if isinstance(q, bool) or not isinstance(q, int | float):
        raise RiskInputError("quantity must be a positive whole number of base units", "quantity")
    if not math.isfinite(q) or q <= 0 or q != int(q) or q > MAX_QUANTITY:
        raise RiskInputError(
            f"quantity must be a whole number in [1, {MAX_QUANTITY:.0e}], got {q!r}", "quantity"
        )
    price = body.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise RiskInputError("price must be a positive number", "price")
        if not math.isfinite(price) or price <= 0:
            raise RiskInputError(f"price must be positive and finite, got {price!r}", "price")
        price = float(price)
    assert pair in PAIRS
    return pair, side, int(q), price


class RiskManager:
    """Loads the portfolio (state DB) and market data (bar store, cached ``ttl_s``) and runs
    :class:`RiskEngine`. One per process; thread-safe."""

    def __init__(self, settings: Any, state: Any, store: Any, ttl_s: float = 5.0) -> None:
        self.settings = settings  # full Settings
        self.state = state
        self.store = store
        self.ttl_s = ttl_s
        self._market: tuple[float, MarketData] | None = None
        self._lock = threading.Lock()

    def market(self) -> MarketData:
        now = time.monotonic()
        m = self._market
        if m is not None and now - m[0] < self.ttl_s:
            return m[1]
        with self._lock:
            latest = self.store.latest()
            if not latest:
                raise RiskInputError(
                    "no bars in the store to price the portfolio", "price",
                    hint="ingest bars, or give price (VaR still needs bars)",
                )  # fmt: skip
            bars = self.store.read_asof(max(latest.values()), self.settings.risk.var_window_bars)
            md = market_from_bars(bars, self.settings.interval, self.settings.max_ffill_bars)
            self._market = (now, md)
            return md

    def engine(self) -> RiskEngine:
        pf = self.state.read_portfolio(self.settings.risk.initial_cash)
        return RiskEngine(self.settings.risk, pf, self.market())

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        pair, side, q, price = validate_request(body)
        out = self.engine().check(pair, side, q, price)
        return {"pair": pair, "side": side, "quantity": q, "price": price, **out}
