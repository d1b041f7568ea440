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


def test_a_build_in_two_processes_writes_the_same_files_and_manifest(stores, tmp_path, monkeypatch):
    """``jobs=2`` forks two workers that share the bar panel: every month file holds the same
    bytes as a one-process build's, the manifest lists the same parts, a rerun skips all,
    and the report and progress are complete."""
    bs, fs, _ = stores
    pairs = ["EURUSD", "USDJPY", "GBPNZD"]
    one = fs.build(bs, pairs)
    par = FeatureStore(tmp_path / "features2")
    seen: list[tuple[int, int]] = []
    here: list[str] = []  # months computed in this process (a forked worker's calls are not)
    real = FeatureStore._build_month

    def counted(self, panel, pair, month):  # type: ignore[no-untyped-def]
        here.append(month)
        return real(self, panel, pair, month)

    monkeypatch.setattr(FeatureStore, "_build_month", counted)
    two = par.build(bs, pairs, jobs=2, progress=lambda d, t: seen.append((d, t)))
    assert here == []  # all six pair-months were built by the workers
    assert two.months_built == one.months_built and two.rows_written == one.rows_written
    assert seen[-1] == (6, 6) and len(seen) == 6
    for p in pairs:
        for mk in fs.months(p):
            a, b = fs.part_path(p, mk).read_bytes(), par.part_path(p, mk).read_bytes()
            assert a == b, (p, mk)
    strip = lambda m: {k: v["rows"] for k, v in m["parts"].items()}  # noqa: E731
    assert strip(par.manifest()) == strip(fs.manifest())
    again = par.build(bs, pairs, jobs=2)
    assert again.months_built == {} and again.rows_written == 0
