"""The feature store: same values as the batch pipeline, incremental and idempotent builds."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from bqx import features as F
from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore
from bqx.features.store import FeatureStore


@pytest.fixture
def stores(tmp_path):
    bars = generate(days=40, seed=3, start="2024-01-20").bars
    bs = DuckDBStore(tmp_path / "bars.duckdb", timedelta(minutes=1))
    bs.upsert(bars)
    return bs, FeatureStore(tmp_path / "features"), bars


def test_store_equals_build_and_is_incremental(stores):
    bs, fs, bars = stores
    rep = fs.build(bs, ["EURUSD", "USDJPY"])
    assert rep.months_built == {"EURUSD": ["2024-01", "2024-02"], "USDJPY": ["2024-01", "2024-02"]}
    got = fs.read("EURUSD", "2024-02-01", "2024-02-10")
    exp = F.build(bars, "EURUSD", start="2024-02-01", end="2024-02-10", with_target=True)
    assert list(got.columns) == [*F.columns(), "target"]
    assert (got.index == exp.index).all()
    np.testing.assert_array_equal(got.to_numpy(), exp.to_numpy().astype(np.float32))
    # lags across the month boundary come from January's rows
    assert np.isfinite(got["w15_ret_lag240"].iloc[0])

    # a rerun with unchanged data does nothing
    rep2 = fs.build(bs, ["EURUSD", "USDJPY"])
    assert rep2.months_built == {} and rep2.rows_written == 0

    # new bars at the end rebuild only the last month; so does a change inside it
    more = generate(days=3, seed=9, start="2024-03-01").bars
    bs.upsert(more)
    rep3 = fs.build(bs, ["EURUSD"])
    assert rep3.months_built == {"EURUSD": ["2024-02", "2024-03"]}  # Feb targets see March bars
    assert "2024-01" in rep3.months_skipped["EURUSD"]


def test_read_subset_of_columns_and_missing_pair(stores):
    bs, fs, _ = stores
    fs.build(bs, ["GBPUSD"], start="2024-02-01")
    df = fs.read("GBPUSD", columns_=["w60_avg", "rsi_14_lag60"])
    assert list(df.columns) == ["w60_avg", "rsi_14_lag60", "target"]
    from bqx.errors import NoDataError

    with pytest.raises(NoDataError, match="bqx features build"):
        fs.read("AUDUSD")
