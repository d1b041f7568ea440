"""The bar cache's refresh skips the store read while nothing was committed (DuckDB: the
file's and the WAL's size and mtime), and still sees a write by another process's store
object at once, and reads at least every REFRESH_FORCE_S."""

from __future__ import annotations

import time
from datetime import timedelta

import pandas as pd

from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore
from bqx.serving import cache as C
from bqx.serving.cache import BarCache


def test_refresh_reads_only_when_the_store_changed(tmp_path, monkeypatch) -> None:
    bars = generate(days=3, pairs="EURUSD,USDJPY", seed=2).bars
    ts = pd.DatetimeIndex(sorted(bars["ts"].unique()))
    path = tmp_path / "bars.duckdb"
    reader = DuckDBStore(path, timedelta(minutes=1))
    writer = DuckDBStore(path, timedelta(minutes=1))  # "another process": its own object
    writer.upsert(bars[bars["ts"] < ts[-5]])
    cache = BarCache(reader, interval=timedelta(minutes=1), max_ffill=5, rows=500)
    assert cache.load()
    opens = reader.open_stats["opens"]
    t0 = reader.change_token()
    for _ in range(5):  # nothing committed: no store open at all
        assert cache.refresh() is False
    assert reader.open_stats["opens"] == opens and cache.skipped_reads == 5
    assert reader.change_token() == t0  # reads (the load above) leave the token alone
    writer.upsert(bars[bars["ts"] >= ts[-5]])  # a commit elsewhere: the token moves
    assert reader.change_token() != t0
    assert cache.refresh() is True  # the new bars are in
    snap = cache.snapshot
    assert snap is not None and int(snap.panel.ts[-1]) == ts[-1].value
    assert reader.open_stats["opens"] > opens
    # the safety net: a read at least every REFRESH_FORCE_S even with an unchanged token
    opens = reader.open_stats["opens"]
    assert cache.refresh() is False and reader.open_stats["opens"] == opens
    monkeypatch.setattr(C, "REFRESH_FORCE_S", 0.0)
    time.sleep(0.01)
    assert cache.refresh() is False and reader.open_stats["opens"] > opens
