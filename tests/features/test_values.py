"""Feature values against independent, textbook implementations.

Recursive indicators (RSI, ATR, ADX, MACD) are compared with the classic recursions run from
the first bar (Wilder's SMA seeding, EMA seeded with the first value): after the warm-up our
truncated filters must agree within 1e-6 relative (the documented truncation bound). Windowed
features (Bollinger, REG, BQX, currency index, Fibonacci) must agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.universe import PAIRS

PAIR = "GBPUSD"


@pytest.fixture(scope="module")
def data(bars_medium):
    df = F.build(bars_medium, PAIR)
    b = bars_medium[bars_medium.pair == PAIR].set_index("ts")
    assert (b.index == df.index).all()  # simulator data has no gaps: grid rows are bars
    return df, b


def wilder_rsi(close: np.ndarray, n: int) -> np.ndarray:
    d = np.diff(close)
    g, lo = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = g[:n].mean(), lo[:n].mean()
    out = np.full(len(close), np.nan)
    out[n] = 100 - 100 / (1 + ag / al)
    for i in range(n, len(d)):
        ag = (ag * (n - 1) + g[i]) / n
        al = (al * (n - 1) + lo[i]) / n
        out[i + 1] = 100 - 100 / (1 + ag / al)
    return out


def true_range(h, lo, c):
    tr = np.empty(len(c))
    tr[0] = h[0] - lo[0]
    tr[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - c[:-1]), np.abs(lo[1:] - c[:-1])])
    return tr


def wilder_atr(h, lo, c, n):
    tr = true_range(h, lo, c)[1:]
    out = np.full(len(c), np.nan)
    a = tr[:n].mean()
    out[n] = a
    for i in range(n, len(tr)):
        a = (a * (n - 1) + tr[i]) / n
        out[i + 1] = a
    return out


def wilder_adx(h, lo, c, n=14):
    up = h[1:] - h[:-1]
    dn = lo[:-1] - lo[1:]
    pdm = np.where((up > dn) & (up > 0), up, 0.0)
    mdm = np.where((dn > up) & (dn > 0), dn, 0.0)
    tr = true_range(h, lo, c)[1:]
    # Wilder's running sums: S = S - S/n + x (ratios are the same as with averages)
    sp, sm, st = pdm[:n].sum(), mdm[:n].sum(), tr[:n].sum()
    dxs, pdis, mdis = [], [], []
    for i in range(n, len(tr)):
        sp, sm, st = sp - sp / n + pdm[i], sm - sm / n + mdm[i], st - st / n + tr[i]
        pdi, mdi = 100 * sp / st, 100 * sm / st
        pdis.append(pdi)
        mdis.append(mdi)
        dxs.append(100 * abs(pdi - mdi) / (pdi + mdi))
    adx = np.mean(dxs[:n])
    for x in dxs[n:]:
        adx = (adx * (n - 1) + x) / n
    return adx, pdis[-1], mdis[-1]


def ema_classic(x: np.ndarray, span: int) -> np.ndarray:
    a = 2 / (span + 1)
    out = np.empty(len(x))
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = a * x[i] + (1 - a) * out[i - 1]
    return out


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_rsi_wilder(data):
    df, b = data
    c = b["close"].to_numpy()
    for n in (7, 14, 28):
        ref = wilder_rsi(c, n)
        assert rel(df[f"rsi_{n}"].iloc[-1], ref[-1]) < 1e-6
        assert rel(df[f"rsi_{n}"].iloc[4000], ref[4000]) < 1e-6


def test_atr_wilder(data):
    df, b = data
    h, lo, c = (b[k].to_numpy() for k in ("high", "low", "close"))
    for n in (14, 28):
        ref = 100 * wilder_atr(h, lo, c, n) / c
        assert rel(df[f"natr_{n}"].iloc[-1], ref[-1]) < 1e-6


def test_adx_and_di_wilder(data):
    df, b = data
    h, lo, c = (b[k].to_numpy() for k in ("high", "low", "close"))
    adx, pdi, mdi = wilder_adx(h, lo, c)
    assert rel(df["adx_14"].iloc[-1], adx) < 1e-6
    assert rel(df["plus_di_14"].iloc[-1], pdi) < 1e-6
    assert rel(df["minus_di_14"].iloc[-1], mdi) < 1e-6


def test_macd(data):
    df, b = data
    c = b["close"].to_numpy()
    macd = ema_classic(c, 12) - ema_classic(c, 26)
    sig = ema_classic(macd, 9)
    # MACD is a small difference of two EMAs: compare on the price scale of the EMAs
    assert abs(df["macd"].iloc[-1] - macd[-1] / c[-1]) < 1e-6 * 1e-4
    assert abs(df["macd_signal"].iloc[-1] - sig[-1] / c[-1]) < 1e-6 * 1e-4
    assert rel(df["ema_ratio_20"].iloc[-1], c[-1] / ema_classic(c, 20)[-1] - 1) < 1e-6


def test_bollinger_exact(data):
    df, b = data
    c = b["close"].to_numpy()[-20:]
    mid, sd = c.mean(), c.std()
    assert rel(df["bb_pctb_20"].iloc[-1], (c[-1] - (mid - 2 * sd)) / (4 * sd)) < 1e-9
    assert rel(df["bb_width_20"].iloc[-1], 4 * sd / mid) < 1e-9


def test_bollinger_on_a_hand_series():
    ts = pd.date_range("2024-03-05 10:00", periods=20, freq="1min", tz="UTC")
    close = np.arange(1.0, 21.0) / 10 + 1  # 1.1 .. 3.0
    bars = pd.DataFrame(
        {"pair": "EURUSD", "ts": ts, "open": close, "high": close, "low": close, "close": close}
    )
    s = F.at(bars, "EURUSD", ts[-1])
    # mean 2.05, population std of 0.1..2.0 step 0.1 = sqrt((20^2-1)/12)/10
    sd = np.sqrt((20**2 - 1) / 12) / 10
    assert abs(s["bb_pctb_20"] - (3.0 - (2.05 - 2 * sd)) / (4 * sd)) < 1e-12
    assert abs(s["bb_width_20"] - 4 * sd / 2.05) < 1e-12
    # stochastic %K of a rising series is 100; its 5-bar ROC is 3.0/2.5 - 1
    assert abs(s["stoch_k_14"] - 100) < 1e-12
    assert abs(s["roc_5"] - (3.0 / 2.5 - 1)) < 1e-12


def test_reg_window_matches_polyfit(data):
    df, b = data
    y = np.log(b["close"].to_numpy()[-60:])
    x = np.arange(-59, 1, dtype=float)
    a2, b2, c2 = np.polyfit(x, y, 2)
    b1, c1 = np.polyfit(x, y, 1)
    row = df.iloc[-1]
    assert rel(row["reg_w60_quad_a"], a2) < 1e-7
    assert rel(row["reg_w60_quad_b"], b2) < 1e-7  # slope of the quadratic at x = 0
    assert abs(row["reg_w60_quad_dev"] - (y[-1] - c2)) < 1e-12
    assert rel(row["reg_w60_slope"], b1) < 1e-9
    assert abs(row["reg_w60_lin_dev"] - (y[-1] - c1)) < 1e-12
    fit = np.polyval([b1, c1], x)
    r2 = 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert abs(row["reg_w60_r2"] - r2) < 1e-9


def test_bqx_window_by_definition(data):
    df, b = data
    lc = np.log(b["close"].to_numpy())
    t = len(lc) - 1
    d = np.array([lc[t] - lc[t - i] for i in range(1, 61)])
    row = df.iloc[-1]
    assert abs(row["w60_avg"] - d.mean()) < 1e-15
    assert abs(row["w60_max"] - d.max()) < 1e-15 and abs(row["w60_min"] - d.min()) < 1e-15
    assert abs(row["w60_ret"] - d[-1]) < 1e-15
    assert abs(row["w60_std"] - d.std()) < 1e-14
    prev = np.mean([lc[t - 60] - lc[t - 60 - i] for i in range(1, 61)])
    assert abs(row["w60_end"] - (d.mean() - prev)) < 1e-15
    assert row["w60_avg_lag61"] == df["w60_avg"].iloc[-62]
    assert row["w15_ret_lag240"] == df["w15_ret"].iloc[-241]


def test_currency_index_by_definition(bars_medium, data):
    df, _ = data
    wide = bars_medium.pivot(index="ts", columns="pair", values="close")
    lc = np.log(wide)
    manual = np.mean(
        [
            (1 if p[:3] == "USD" else -1) * (lc[p].iloc[-1] - lc[p].iloc[-61])
            for p in PAIRS
            if "USD" in p
        ]
    )
    assert abs(df["csi_usd"].iloc[-1] - manual) < 1e-15
    # the 8 indices sum to zero when triangles hold
    csi = df.filter(like="csi_").iloc[-1]
    assert abs(csi.sum()) < 1e-12


def test_fibonacci_level(data):
    df, b = data
    h = b["high"].to_numpy()[-120:]
    lo = b["low"].to_numpy()[-120:]
    c = b["close"].to_numpy()[-1]
    hi, low = h.max(), lo.min()
    assert abs(df["fib_d618_120"].iloc[-1] - (c - (low + 0.618 * (hi - low))) / c) < 1e-15
    assert abs(df["fib_pos_120"].iloc[-1] - (c - low) / (hi - low)) < 1e-12
    up = 119 - np.argmax(h[::-1][::-1] == hi) if False else None  # noqa: F841 - clarity below
    last_hi = 119 - int(np.flatnonzero(h == hi)[-1])
    last_lo = 119 - int(np.flatnonzero(lo == low)[-1])
    assert df["fib_dir_120"].iloc[-1] == (1.0 if last_hi < last_lo else -1.0)
