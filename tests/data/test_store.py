"""One test suite for both store backends (DuckDB and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from bqx.data.bars import normalize_bars
from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore, PostgresStore, open_store
from bqx.errors import StoreError


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return generate(days=8, pairs="EURUSD,USDJPY,EURJPY", seed=7).bars


def test_upsert_is_idempotent(store, sim):
    r1 = store.upsert(sim)
    assert r1.inserted == len(sim) and r1.updated == 0 and r1.unchanged == 0
    before = store.read()
    r2 = store.upsert(sim)
    assert (r2.inserted, r2.updated, r2.unchanged) == (0, 0, len(sim))
    pd.testing.assert_frame_equal(store.read(), before, check_exact=True)


def test_upsert_updates_changed_rows_only(store, sim):
    store.upsert(sim)
    changed = sim.iloc[[5, 17]].copy()
    changed["close"] = changed["close"] * 1.0001
    changed["high"] = np.maximum(changed["high"], changed["close"])
    new = sim.iloc[[-1]].copy()
    new["ts"] = new["ts"] + pd.Timedelta(minutes=1)
    r = store.upsert(pd.concat([changed, sim.iloc[[8]], new]))
    assert (r.inserted, r.updated, r.unchanged) == (1, 2, 1)
    got = store.read()
    row = got[(got.pair == changed.pair.iloc[0]) & (got.ts == changed.ts.iloc[0])]
    assert row["close"].iloc[0] == changed["close"].iloc[0]
    assert len(got) == len(sim) + 1


def test_upsert_rejects_duplicate_keys_and_writes_nothing(store, sim):
    dup = pd.concat([sim.iloc[:10], sim.iloc[[3]]])
    with pytest.raises(StoreError):
        store.upsert(dup)
    assert len(store.read()) == 0


def test_read_range_and_pairs(store, sim):
    store.upsert(sim)
    t0, t1 = sim.ts.iloc[100], sim.ts.iloc[400]
    got = store.read(["USDJPY"], start=t0, end=t1)
    exp = sim[(sim.pair == "USDJPY") & (sim.ts >= t0) & (sim.ts <= t1)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, normalize_bars(exp), check_exact=True)
    assert list(store.read(columns=["close"]).columns) == ["pair", "ts", "close"]


def test_read_asof_last_n_for_all_pairs(store, sim):
    store.upsert(sim)
    t = sim.ts.iloc[3000] + pd.Timedelta(seconds=30)  # between bars: the last bar at or before t
    got = store.read_asof(t, 500)
    for p, g in got.groupby("pair"):
        exp = sim[(sim.pair == p) & (sim.ts <= t)].tail(500).reset_index(drop=True)
        pd.testing.assert_frame_equal(
            g.reset_index(drop=True), normalize_bars(exp), check_exact=True
        )
    assert sorted(got.pair.unique()) == ["EURJPY", "EURUSD", "USDJPY"]


def test_read_asof_spans_weekend_and_long_gap(store, sim):
    # drop two days in the middle of the week for one pair: the as-of read must reach further back
    eur = sim[sim.pair == "EURUSD"]
    cut = eur[(eur.ts >= "2024-01-03") & (eur.ts < "2024-01-05 12:00")]
    data = sim.drop(cut.index)
    store.upsert(data)
    t = pd.Timestamp("2024-01-08 02:00", tz="UTC")  # Monday, after a weekend
    got = store.read_asof(t, 3000, ["EURUSD"])
    exp = data[(data.pair == "EURUSD") & (data.ts <= t)].tail(3000).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, normalize_bars(exp), check_exact=True)


def test_latest_and_summary_gaps(store, sim):
    eur = sim[sim.pair == "EURUSD"]
    hole = eur[(eur.ts >= "2024-01-03 10:00") & (eur.ts < "2024-01-03 10:07")]  # 7 missing bars
    data = sim.drop(hole.index)
    store.upsert(data)
    lat = store.latest()
    assert lat == {p: g.ts.max() for p, g in sim.groupby("pair")}
    summ = store.summary().set_index("pair")
    assert summ.loc["EURUSD", "rows"] == len(eur) - 7
    assert summ.loc["EURUSD", "gaps"] == 1 and summ.loc["EURUSD", "missing_bars"] == 7
    # weekends are closed-market time, not gaps
    assert summ.loc["USDJPY", "gaps"] == 0
    assert store.summary("USDJPY")["pair"].tolist() == ["USDJPY"]


def test_fingerprint_changes_with_data(store, sim):
    store.upsert(sim)
    a = store.fingerprint("2024-01-02", "2024-01-04")
    assert a == store.fingerprint("2024-01-02", "2024-01-04")
    x = sim[(sim.ts > "2024-01-03")].iloc[[0]].copy()
    x["close"] *= 1.00001
    x["high"] = np.maximum(x["high"], x["close"])
    store.upsert(x)
    assert store.fingerprint("2024-01-02", "2024-01-04") != a
    assert store.ping()


@pytest.mark.integration
def test_postgres_and_duckdb_return_identical_frames(tmp_path, sim, pg_url):
    duck = DuckDBStore(tmp_path / "x.duckdb", timedelta(minutes=1))
    pg = PostgresStore(pg_url, timedelta(minutes=1), table=f"bars_t{uuid.uuid4().hex[:10]}")
    try:
        for s in (duck, pg):
            s.upsert(sim)
        t = sim.ts.iloc[5000]
        pd.testing.assert_frame_equal(duck.read(), pg.read(), check_exact=True)
        pd.testing.assert_frame_equal(
            duck.read(["EURJPY"], "2024-01-03", "2024-01-04"),
            pg.read(["EURJPY"], "2024-01-03", "2024-01-04"),
            check_exact=True,
        )
        pd.testing.assert_frame_equal(
            duck.read_asof(t, 1500), pg.read_asof(t, 1500), check_exact=True
        )
        assert duck.latest() == pg.latest()
        pd.testing.assert_frame_equal(duck.summary(), pg.summary())
        assert duck.fingerprint() == pg.fingerprint()
    finally:
        pg.drop()
        pg.close()


def test_nullable_volume_and_spread_roundtrip(store, sim):
    x = sim.iloc[:50].copy()
    x.loc[x.index[:10], "volume"] = np.nan
    x.loc[x.index[5:20], "spread"] = np.nan
    store.upsert(x)
    got = store.read()
    assert got["volume"].isna().sum() == 10 and got["spread"].isna().sum() == 15
    # re-ingesting rows with NULLs is still a no-op (NULL IS NOT DISTINCT FROM NULL)
    r = store.upsert(x)
    assert r.unchanged == 50


def test_open_store_urls(tmp_path):
    s = open_store(f"duckdb:///{tmp_path}/a/b.duckdb", timedelta(minutes=1))
    assert isinstance(s, DuckDBStore) and (tmp_path / "a" / "b.duckdb").exists()
    with pytest.raises(StoreError):
        open_store("mysql://x", timedelta(minutes=1))


def test_postgres_unreachable_gives_clear_error():
    # construction succeeds (a server may start before its database, issue 18.13); the
    # first operation says what is wrong, without the password
    s = PostgresStore("postgresql://postgres:s3cret@127.0.0.1:1/test", timedelta(minutes=1))
    assert s.ping() is False
    with pytest.raises(StoreError, match="PostgreSQL") as ei:
        s.latest()
    assert "s3cret" not in str(ei.value)


def test_duckdb_second_process_waits_for_lock_then_fails_clearly(tmp_path):
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "locked.duckdb"
    DuckDBStore(path, timedelta(minutes=1))  # create
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, time, sys
            con = duckdb.connect({str(path)!r})
            print('locked', flush=True)
            time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        s = DuckDBStore.__new__(DuckDBStore)
        s.path, s.interval, s.lock_timeout_s, s._held, s._held_ro = (
            path,
            timedelta(minutes=1),
            0.5,
            None,
            False,
        )
        s.url = f"duckdb:///{path}"
        s.open_stats = {"opens": 0, "lock_retries": 0, "lock_sleep_s": 0.0, "open_s": 0.0}
        with pytest.raises(StoreError, match="holds the file"):
            s.read()
    finally:
        holder.kill()
        holder.wait()
    # once the other process is gone, the store works again
    s2 = DuckDBStore(path, timedelta(minutes=1))
    assert len(s2.read()) == 0
