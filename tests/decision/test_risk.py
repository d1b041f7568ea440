"""Risk manager: hand-computed limits and allowed_quantity == brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from bqx.config import RiskSettings
from bqx.decision.risk import MarketData, RiskEngine, RiskInputError, validate_request
from bqx.state import Portfolio

PAIRS = ["EURUSD", "USDJPY", "GBPUSD", "EURJPY", "AUDUSD", "USDCAD", "USDCHF", "NZDUSD"]
PRICES = {"EURUSD": 1.10, "USDJPY": 150.0, "GBPUSD": 1.25, "EURJPY": 165.0,
          "AUDUSD": 0.66, "USDCAD": 1.36, "USDCHF": 0.88, "NZDUSD": 0.61}  # fmt: skip


def market(n: int = 400, seed: int = 0, bpd: float = 1440.0) -> MarketData:
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n, len(PAIRS))) @ np.diag(np.linspace(1e-4, 3e-4, len(PAIRS)))
    r[:, 3] += 0.5 * r[:, 0]  # EURJPY co-moves with EURUSD
    return MarketData(list(PAIRS), dict(PRICES), r, bpd)


def engine(positions=None, cash=100_000.0, realized=0.0, **limits) -> RiskEngine:
    s = RiskSettings(**limits)
    pf = Portfolio(cash, realized, None, positions or {})
    return RiskEngine(s, pf, market())


def test_concentration_hand_computed():
    # 25 % of 100k equity = 25k USD of EURUSD = 25000/1.10 EUR
    e = engine(max_var_frac=10.0, max_currency_net_frac=10.0)
    out = e.check("EURUSD", "BUY", 30_000)
    pos = next(c for c in out["checks"] if c["code"] == "POSITION_LIMIT")
    assert pos["after"] == pytest.approx(30_000 * 1.10)
    assert pos["limit"] == pytest.approx(25_000.0)
    assert not out["approved"] and out["allowed_quantity"] == math.floor(25_000 / 1.10)
    assert {r["code"] for r in out["reasons"]} == {"POSITION_LIMIT"}


def test_currency_exposure_long_eurusd_and_eurjpy_are_both_long_eur():
    # long 20k EUR via EURUSD (22k USD), then buying EURJPY adds to EUR: limit 30k USD
    e = engine({"EURUSD": (20_000.0, 1.10)}, max_currency_net_frac=0.30,
               max_var_frac=10.0, max_position_frac=10.0)  # fmt: skip
    out = e.check("EURJPY", "BUY", 10_000)
    cur = {c["name"]: c for c in out["checks"] if c["code"] == "CURRENCY_EXPOSURE"}
    eur_per_unit = 165.0 * (1 / 150.0)  # EURJPY price * JPY in USD = 1.10
    assert cur["currency_EUR"]["before"] == pytest.approx(22_000.0)
    assert cur["currency_EUR"]["after"] == pytest.approx(22_000 + 10_000 * eur_per_unit)
    assert cur["currency_JPY"]["after"] == pytest.approx(10_000 * eur_per_unit)
    assert not out["approved"]
    assert out["allowed_quantity"] == math.floor(8_000 / eur_per_unit + 1e-9)


def test_leverage_hand_computed():
    # gross 120k USD on 100k equity; limit 1.5 -> 30k more USD notional
    pos = {"EURUSD": (50_000.0, 1.10), "GBPUSD": (-44_000.0, 1.25), "USDJPY": (10_000.0, 150.0)}
    e = engine(pos, max_position_frac=10, max_currency_net_frac=10, max_var_frac=10)
    assert float(np.abs(e.e).sum()) == pytest.approx(55_000 + 55_000 + 10_000)
    out = e.check("AUDUSD", "BUY", 100_000)
    lev = next(c for c in out["checks"] if c["code"] == "LEVERAGE")
    assert lev["limit"] == pytest.approx(150_000.0)
    assert out["allowed_quantity"] == math.floor(30_000 / 0.66)


def test_daily_loss_blocks_risk_increasing_trades_only():
    # realised -3k today on 100k start-of-day equity > 2 %: only gross-reducing trades pass
    e = engine({"EURUSD": (10_000.0, 1.10)}, cash=97_000.0, realized=-3_000.0)
    out = e.check("EURUSD", "BUY", 1)
    assert not out["approved"] and out["allowed_quantity"] == 0
    assert "DAILY_LOSS" in {r["code"] for r in out["reasons"]}
    assert e.check("EURUSD", "SELL", 10_000)["approved"]  # closing is allowed
    assert e.check("EURUSD", "SELL", 20_001)["allowed_quantity"] == 20_000


def test_var_hand_computed():
    e = engine({"EURUSD": (100_000.0, 1.10), "USDJPY": (-50_000.0, 150.0)})
    md = e.m
    ex = np.zeros(len(PAIRS))
    ex[0] = 100_000 * 1.10
    ex[1] = -50_000 * 150.0 * (1 / 150.0)
    pnl = md.returns @ ex
    k = math.floor(len(pnl) * 0.05)
    hist = -np.sort(pnl)[k - 1] * math.sqrt(1440)
    param = norm.ppf(0.95) * math.sqrt(ex @ np.cov(md.returns, rowvar=False) @ ex * 1440)
    h, p = e.var(e.e)
    assert h == pytest.approx(hist, rel=1e-12) and p == pytest.approx(param, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_allowed_quantity_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    pos = {p: (float(rng.integers(-9_000, 9_000)), PRICES[p]) for p in rng.choice(PAIRS, 3)}
    e = engine(pos, cash=30_000.0, max_var_frac=float(rng.uniform(0.002, 0.02)),
               max_currency_net_frac=float(rng.uniform(0.2, 0.6)))  # fmt: skip
    pair = str(rng.choice(PAIRS))
    side = str(rng.choice(["BUY", "SELL"]))
    q = int(rng.integers(300, 18_000))
    tr = e._trade(pair, side, None)
    limits = e._limits(tr)
    # brute force: every whole quantity, exact check, largest passing
    brute = max((x for x in range(q + 1) if e.passes(tr, float(x), limits)), default=0)
    out = e.check(pair, side, q)
    assert out["allowed_quantity"] == brute
    assert out["approved"] == (brute == q)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"pair": "EURUSD", "side": "BUY", "quantity": -5}, "quantity"),
        ({"pair": "EURUSD", "side": "BUY", "quantity": 1e15}, "quantity"),
        ({"pair": "EURUSD", "side": "BUY", "quantity": 1.5}, "quantity"),
        ({"pair": "XXXYYY", "side": "BUY", "quantity": 5}, "pair"),
        ({"pair": "EURUSD", "side": "HOLD", "quantity": 5}, "side"),
        ({"pair": "EURUSD", "side": "BUY", "quantity": 5, "price": float("nan")}, "price"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(RiskInputError) as ei:
        validate_request(body)
    assert ei.value.field == field


@pytest.mark.parametrize("seed", range(4))
def test_allowed_quantity_equals_brute_force_when_var_binds(seed):
    """Only the VaR limits bind: the historical one is not convex in the quantity."""
    rng = np.random.default_rng(100 + seed)
    pos = {p: (float(rng.integers(-12_000, 12_000)), PRICES[p]) for p in rng.choice(PAIRS, 4)}
    e = engine(pos, cash=30_000.0, max_position_frac=100, max_currency_net_frac=100, max_leverage=100,
               max_var_frac=float(rng.uniform(0.002, 0.006)))  # fmt: skip
    pair, side = str(rng.choice(PAIRS)), str(rng.choice(["BUY", "SELL"]))
    q = int(rng.integers(6_000, 24_000))
    tr = e._trade(pair, side, None)
    limits = e._limits(tr)
    brute = max((x for x in range(q + 1) if e.passes(tr, float(x), limits)), default=0)
    assert e.check(pair, side, q)["allowed_quantity"] == brute
