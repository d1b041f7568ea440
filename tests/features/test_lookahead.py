"""The user-facing lookahead audit: the built-in columns pass, deliberately leaking families
(next bar's close, a statistic of the whole context, an under-declared lookback) are caught."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.errors import NoDataError
from bqx.features._ops import rolling_mean
from bqx.features.context import Ctx, Family, Spec
from bqx.features.lookahead import LEAK_COLUMNS, check_lookahead
from bqx.features.panel import Panel


def _next_return(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """Leaks: the next bar's return (NaN at the last bar of the context)."""
    out = np.full(len(pos), np.nan)
    ok = pos + 1 < ctx.n
    out[ok] = ctx.c[pos[ok] + 1] / ctx.c[pos[ok]] - 1.0
    return out[:, None]


def _over_context_max(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """Leaks: close divided by the maximum close of the whole context (future included)."""
    return (ctx.c[pos] / np.nanmax(ctx.c))[:, None]


def _sma_300_declared_0(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """Causal, but reads 300 bars while declaring a lookback of 0: online != batch."""
    return (ctx.c / rolling_mean(ctx.c, 300) - 1.0)[pos][:, None]


LEAKY = (
    Family(
        "leak_next", False, (Spec("leak_next_ret", "leak_next", "next return", 0),), _next_return
    ),
    Family(
        "leak_max", True, (Spec("leak_max_ratio", "leak_max", "close / max", 0),), _over_context_max
    ),
    Family(
        "short_lb", False, (Spec("sma300_lb0", "short_lb", "close/SMA300", 0),), _sma_300_declared_0
    ),
)


def test_builtin_features_do_not_leak(bars_small: pd.DataFrame) -> None:
    rep = check_lookahead(bars_small, pairs=["EURUSD", "AUDJPY"], samples=4, seed=3)
    assert rep.ok, rep.leaking.to_string()
    assert rep.pairs == ["EURUSD", "AUDJPY"] and rep.samples == 4 and rep.comparisons == 8
    assert rep.columns_checked == len(F.columns()) == 809
    # samples are spread over the data and all have the lookback as history
    ts = pd.DatetimeIndex(rep.timestamps)
    assert ts.is_monotonic_increasing and ts.is_unique
    first = Panel.from_bars(bars_small).ts
    assert (np.searchsorted(first, ts.asi8) >= F.lookback()).all()
    d = rep.as_dict()
    json.dumps(d)
    assert d["ok"] and d["leaking"] == [] and d["samples"] == 4


def test_leaking_families_are_caught(bars_small: pd.DataFrame) -> None:
    for fam in LEAKY:
        F.register_family(fam)
    try:
        assert len(F.columns()) == 809 + 1 + 5 + 1
        rep = check_lookahead(bars_small, pairs=["EURUSD"], samples=3, seed=1)
    finally:
        for fam in LEAKY:
            F.unregister_family(fam.name)
    assert len(F.columns()) == 809
    assert not rep.ok
    lk = rep.leaking.set_index("column")
    assert list(rep.leaking.columns) == LEAK_COLUMNS
    # exactly the bad columns: the built-ins stay clean even next to leaking families
    assert set(lk.index) == {
        "leak_next_ret",
        "leak_max_ratio",
        *(f"leak_max_ratio_lag{lag}" for lag in F.LAGS),
        "sma300_lb0",
    }
    assert lk.loc["leak_next_ret", "n_samples"] == 3
    assert lk.loc["leak_next_ret", "nan_mismatch"] == 3  # NaN once the next bar is gone
    assert lk.loc["leak_next_ret", "paths"] == "at,build"
    assert lk.loc["leak_max_ratio", "family"] == "leak_max"
    assert lk.loc["leak_max_ratio_lag120", "base"] == "leak_max_ratio"
    assert float(lk.at["leak_max_ratio", "max_rel_diff"]) > 1e-6  # type: ignore[arg-type]
    # an under-declared lookback breaks only the online path (the batch sees all history)
    assert lk.loc["sma300_lb0", "paths"] == "at"
    d = rep.as_dict()
    json.dumps(d)
    assert d["leaking_bases"] == ["leak_max_ratio", "leak_next_ret", "sma300_lb0"]


def test_gaps_missing_fields_and_panel_input(bars_small: pd.DataFrame) -> None:
    """Forward-filled gaps, a market-wide gap and a pair without volume: still no leak, and a
    Panel gives the same answer as the long frame."""
    rng = np.random.default_rng(0)
    b = bars_small[rng.random(len(bars_small)) > 0.03].copy()
    b.loc[b["pair"] == "GBPUSD", "volume"] = np.nan
    hole = (b["ts"] > "2024-03-07 03:00") & (b["ts"] < "2024-03-07 03:20")
    b = b[~hole].reset_index(drop=True)
    rep = check_lookahead(b, pairs=["GBPUSD"], samples=3, seed=5)
    assert rep.ok, rep.leaking.to_string()
    rep_p = check_lookahead(Panel.from_bars(b), pairs=["GBPUSD"], samples=3, seed=5)
    assert rep_p.ok and rep_p.timestamps == rep.timestamps


def test_errors(bars_small: pd.DataFrame) -> None:
    short = bars_small[bars_small["ts"] < bars_small["ts"].min() + pd.Timedelta(hours=12)]
    with pytest.raises(NoDataError, match="rows of history"):
        check_lookahead(short, pairs=["EURUSD"], samples=2)
    with pytest.raises(NoDataError, match="no bars for USDCHF"):
        check_lookahead(bars_small[bars_small["pair"] != "USDCHF"], pairs=["USDCHF"])
    with pytest.raises(ValueError, match="samples"):
        check_lookahead(bars_small, samples=0)
