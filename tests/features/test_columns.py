"""Column layout, counts and hygiene."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx import features as F


def test_counts_follow_the_spec():
    cat = F.catalog()
    assert len(cat) == 809 == len(F.columns())
    base = cat[cat.lag == 0]
    counts = base.family.value_counts().to_dict()
    assert counts == {
        "bqx": 40, "reg": 57, "technical": 45, "volume": 10, "currency": 8, "stats": 5,
        "bollinger": 5, "time": 8, "spread": 20, "correlation": 15, "fibonacci": 12, "derived": 3,
    }  # fmt: skip
    assert len(base) == 228
    lagged = cat[cat.lag.isin([60, 120, 180, 240])]
    assert len(lagged) == 142 * 4
    causal = cat[cat.lag == 61]
    assert len(causal) == 13
    assert sorted(causal.base.str.slice(0, 4).unique()) == ["agg_", "w60_"]
    assert F.columns()[:3] == ["w15_ret", "w15_max", "w15_min"]
    assert F.columns()[-1] == "agg_pos_frac_lag61"
    assert F.lookback() >= cat.lookback.max()


def test_no_constant_duplicate_or_all_nan_columns(bars_medium):
    df = F.build(bars_medium, "GBPJPY")
    body = df.iloc[F.lookback() :]
    assert len(body) > 5000
    all_nan = [c for c in body.columns if body[c].isna().all()]
    assert not all_nan
    const = [c for c in body.columns if body[c].nunique(dropna=True) <= 1]
    assert not const
    full = body.dropna()
    assert len(full) > 0.9 * len(body)
    # exact duplicates (same values in every row)
    h = pd.util.hash_pandas_object(full.T, index=False)
    dups = h[h.duplicated(keep=False)]
    assert dups.empty, f"duplicated columns: {list(dups.index)}"


def test_missing_volume_and_spread_give_nan_and_are_reported(bars_small):
    b = bars_small.copy()
    b.loc[b.pair == "EURUSD", ["volume", "spread"]] = np.nan
    df = F.build(b, "EURUSD")
    cat = F.catalog().set_index("name")
    needs_vs = [
        c
        for c in df.columns
        if {"volume", "spread"} & set(filter(None, cat.loc[c, "needs"].split(",")))
    ]
    assert needs_vs and df[needs_vs].isna().all().all()
    others = [c for c in df.columns if c not in needs_vs]
    assert df[others].iloc[-1].notna().mean() > 0.95  # the rest is still computed
    assert df.attrs["missing_fields"] == ["volume", "spread"]
    rep = F.missing_report(b, ["EURUSD"])
    assert rep["pairs"]["EURUSD"]["missing_fields"] == ["volume", "spread"]
    assert rep["pairs"]["EURUSD"]["nan_columns"] == len(needs_vs)


def test_cross_features_need_all_pairs(bars_small):
    one = bars_small[bars_small.pair.isin(["EURUSD", "GBPUSD"])]
    df = F.build(one, "EURUSD")
    assert df.filter(like="csi_").isna().all().all()
    assert df.filter(like="corr_base").isna().all().all()
    assert F.missing_report(one)["missing_pairs"]
