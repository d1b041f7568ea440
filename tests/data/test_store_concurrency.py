"""18.12: concurrent writers of one DuckDB file in one process (``POST /v1/bars`` from
several request threads). Before the fix 0.5-3 % of upserts failed with "Table Function
with name pandas_scan does not exist" (with Arrow registration and no lock, ~2 %)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore

PAIRS = ("EURUSD", "USDJPY", "GBPUSD", "AUDUSD")


def test_concurrent_upserts_and_reads_on_duckdb_never_fail(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "bars.duckdb", timedelta(minutes=1))
    bars = generate(days=1, pairs=",".join(PAIRS), seed=1).bars
    errors: list[str] = []
    done = {p: 0 for p in PAIRS}
    stop = time.monotonic() + 3.0

    def writer(pair: str) -> None:
        b = bars[bars["pair"] == pair].reset_index(drop=True)
        i = 0
        while time.monotonic() < stop and i + 3 <= len(b):
            try:
                store.upsert(b.iloc[i : i + 3])
                done[pair] = i + 3
            except Exception as e:
                errors.append(repr(e)[:200])
            i += 3

    def reader() -> None:
        while time.monotonic() < stop:
            try:
                store.latest()
            except Exception as e:
                errors.append(repr(e)[:200])

    threads = [threading.Thread(target=writer, args=(p,)) for p in PAIRS]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.summary().set_index("pair")["rows"].to_dict()
    assert rows == {p: n for p, n in done.items() if n}
    assert sum(done.values()) > 100
