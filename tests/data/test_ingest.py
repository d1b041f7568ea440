"""Ingestion: every format, strict rejection, quarantine, idempotence (DuckDB and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqx.data.ingest import (
    FORMATS,
    SAMPLES_DIR,
    ingest_file,
    pair_from_filename,
    read_source,
    validate_file,
)
from bqx.errors import BqxError, DataValidationError, UnknownPairError
from bqx.universe import PAIRS

HISTDATA = SAMPLES_DIR / "DAT_ASCII_EURUSD_M1_sample.csv"
DUKASCOPY = SAMPLES_DIR / "dukascopy_usdjpy_m1.csv"
OANDA = SAMPLES_DIR / "oanda_gbpusd_m1.json"
GENERIC = SAMPLES_DIR / "generic_audusd.csv"
SAMPLES = [(HISTDATA, "histdata"), (DUKASCOPY, "dukascopy"), (OANDA, "oanda"), (GENERIC, "csv")]

HEADER = "pair,ts,open,high,low,close,volume,spread\n"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# =========================================================================================
# samples and formats
# =========================================================================================
def test_formats_tuple():
    assert FORMATS == ("csv", "parquet", "histdata", "dukascopy", "oanda")


@pytest.mark.parametrize(("path", "fmt"), SAMPLES, ids=[f for _, f in SAMPLES])
def test_every_sample_is_valid(path, fmt):
    rep = validate_file(path, fmt)
    assert rep.ok, rep.issues
    assert rep.rows_read >= 24
    d = rep.as_dict()
    json.dumps(d)  # JSON-able
    assert d["ok"] is True and d["issue_count"] == 0


def test_histdata_est_to_utc_known_rows(tmp_path):
    src = read_source(HISTDATA, "histdata")
    assert (src.bars["pair"] == "EURUSD").all()
    # line 16 of the sample is `20240102 170000;...` (EST, no DST) -> 22:00 UTC
    i = int(np.flatnonzero(src.rows == 16)[0])
    assert src.bars["ts"].iloc[i] == ts("2024-01-02 22:00:00")
    assert HISTDATA.read_text().splitlines()[15].startswith("20240102 170000;")
    assert src.bars["volume"].isna().all()  # HistData volume is always 0: stored as missing
    assert src.missing_fields == ["volume", "spread"]
    # July: New York is on EDT, HistData is not: still +5 h
    f = write(
        tmp_path / "DAT_ASCII_EURUSD_M1_202407.csv",
        "20240710 093000;1.08310;1.08330;1.08300;1.08320;0\n"
        "20240710 093100;1.08320;1.08340;1.08310;1.08330;0\n",
    )
    src = read_source(f, "histdata")
    assert src.bars["ts"].tolist() == [ts("2024-07-10 14:30"), ts("2024-07-10 14:31")]
    assert src.bars["close"].tolist() == [1.0832, 1.0833]
    assert src.rows.tolist() == [1, 2]  # no header: the first bar is line 1


def test_histdata_pair_from_argument_and_not_histdata(tmp_path):
    f = write(tmp_path / "m1.csv", "20240102 170000;1.1;1.2;1.0;1.1;0\n")
    with pytest.raises(DataValidationError, match="cannot tell the pair"):
        read_source(f, "histdata")
    assert read_source(f, "histdata", pair="gbp/usd").bars["pair"].iloc[0] == "GBPUSD"
    with pytest.raises(DataValidationError, match="not a HistData"):
        read_source(GENERIC, "histdata", pair="AUDUSD")


def test_dukascopy_gmt_sample():
    src = read_source(DUKASCOPY, "dukascopy")
    assert (src.bars["pair"] == "USDJPY").all()
    first = src.bars.iloc[0]
    assert first["ts"] == ts("2024-01-03 08:00")  # 03.01.2024 is day.month.year
    assert first["open"] == 142.318
    assert first["volume"] == 4.0993  # traded volume (millions), kept as is
    assert src.missing_fields == ["spread"]
    assert src.rows[0] == 2


def test_dukascopy_local_time_offset(tmp_path):
    f = write(
        tmp_path / "EURUSD_Candlestick_1_M_BID.csv",
        "Local time,Open,High,Low,Close,Volume\n"
        "03.01.2024 10:00:00.000 GMT+0200,1.0921,1.0923,1.0920,1.0922,1.25\n"
        "03.07.2024 10:00:00.000 GMT+0300,1.0821,1.0823,1.0820,1.0822,2.5\n"
        "04.07.2024 01:30:00.000 GMT-0500,1.0821,1.0823,1.0820,1.0822,2.5\n",
    )
    src = read_source(f, "dukascopy")
    assert src.bars["ts"].tolist() == [
        ts("2024-01-03 08:00"),
        ts("2024-07-03 07:00"),
        ts("2024-07-04 06:30"),
    ]
    assert src.bars["pair"].iloc[0] == "EURUSD"


def test_oanda_sample_spread_from_bid_ask():
    src = read_source(OANDA, "oanda")
    doc = json.loads(OANDA.read_text())
    c0 = doc["candles"][0]
    b = src.bars.iloc[0]
    assert b["pair"] == "GBPUSD"
    assert b["ts"] == ts("2024-01-04 13:00")
    assert b["open"] == float(c0["mid"]["o"]) and b["close"] == float(c0["mid"]["c"])
    exp = np.mean([float(c0["ask"][k]) - float(c0["bid"][k]) for k in "ohlc"])
    assert b["spread"] == pytest.approx(exp, abs=1e-12)
    # the known first candle: ask - bid = 15, 15, 13, 17 pips/10 -> 0.00015
    assert b["spread"] == pytest.approx(0.00015, abs=1e-9)
    assert b["volume"] == c0["volume"]
    assert src.missing_fields == []


def test_oanda_mid_from_bid_ask_unix_times_and_incomplete(tmp_path):
    doc = {
        "instrument": "EUR_USD",
        "granularity": "M1",
        "candles": [
            {
                "complete": True,
                "volume": 7,
                "time": "1704276000.000000000",
                "bid": {"o": "1.09200", "h": "1.09220", "l": "1.09190", "c": "1.09210"},
                "ask": {"o": "1.09210", "h": "1.09232", "l": "1.09200", "c": "1.09222"},
            },
            {
                "complete": False,
                "volume": 2,
                "time": "1704276060.000000000",
                "bid": {"o": "1.09210", "h": "1.09215", "l": "1.09205", "c": "1.09212"},
                "ask": {"o": "1.09220", "h": "1.09225", "l": "1.09215", "c": "1.09222"},
            },
        ],
    }
    f = write(tmp_path / "candles.json", json.dumps(doc))
    src = read_source(f, "oanda")
    b = src.bars.iloc[0]
    assert b["ts"] == ts("2024-01-03 10:00")
    assert b["open"] == pytest.approx(1.09205)
    assert b["high"] == pytest.approx(1.09226)
    assert b["spread"] == pytest.approx((0.0001 + 0.00012 + 0.0001 + 0.00012) / 4)
    assert src.issues["reason"].tolist() == ["incomplete_candle"]
    assert src.issues["row"].tolist() == [2]
    rep = validate_file(f, "oanda")
    assert not rep.ok and rep.issues["reason"].tolist() == ["incomplete_candle"]


def test_oanda_mid_only_has_no_spread(tmp_path):
    doc = {
        "instrument": "USD_JPY",
        "candles": [
            {
                "complete": True,
                "volume": 12,
                "time": "2024-01-02T00:00:00.000000000Z",
                "mid": {"o": "141.100", "h": "141.150", "l": "141.090", "c": "141.120"},
            }
        ],
    }
    src = read_source(write(tmp_path / "c.json", json.dumps(doc)), "oanda")
    assert src.bars["close"].iloc[0] == 141.12
    assert np.isnan(src.bars["spread"].iloc[0])
    assert src.missing_fields == ["spread"]


def test_generic_sample_and_filename_pair():
    src = read_source(GENERIC, "csv")
    assert (src.bars["pair"] == "AUDUSD").all()
    assert src.bars["ts"].iloc[0] == ts("2024-01-10 14:00")
    assert src.rows[:3].tolist() == [2, 3, 4]  # header is line 1
    assert src.missing_fields == []


def test_generic_mapping_tz_and_pair_column(tmp_path):
    f = write(
        tmp_path / "export.csv",
        "Symbol;Date;Last;Hi;Lo;First\n"
        "EUR/USD;2024-01-03 11:00;1.0925;1.0930;1.0920;1.0922\n"
        "eur_usd;2024-07-03 11:00;1.0825;1.0830;1.0820;1.0822\n",
    )
    with pytest.raises(DataValidationError, match="cannot find a column for open, high, low"):
        read_source(f, "csv")
    src = read_source(
        f,
        "csv",
        mapping={"ts": "Date", "close": "Last", "high": "Hi", "low": "Lo", "open": "First"},
        tz="Europe/Berlin",
    )
    assert src.bars["pair"].tolist() == ["EURUSD", "EURUSD"]
    assert src.bars["ts"].tolist() == [ts("2024-01-03 10:00"), ts("2024-07-03 09:00")]
    assert src.bars["close"].tolist() == [1.0925, 1.0825]
    assert src.missing_fields == ["volume", "spread"]


def test_generic_ts_variants(tmp_path):
    # aware stamps are converted; epoch seconds and milliseconds are recognised
    f = write(
        tmp_path / "gbpjpy.csv",
        "timestamp,o,h,l,c,tick_volume\n"
        "2024-01-03T12:00:00+02:00,190.1,190.2,190.0,190.1,5\n"
        "1704276060,190.1,190.2,190.0,190.1,5\n"
        "1704276120000,190.1,190.2,190.0,190.1,5\n",
    )
    src = read_source(f, "csv")
    assert src.bars["ts"].tolist() == [
        ts("2024-01-03 10:00"),
        ts("2024-01-03 10:01"),
        ts("2024-01-03 10:02"),
    ]
    assert src.bars["volume"].tolist() == [5.0, 5.0, 5.0]
    assert src.missing_fields == ["spread"]
    # MetaTrader style: separate Date and Time columns, odd date format, ts_format override
    f = write(
        tmp_path / "NZDUSD1.csv",
        "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<TICKVOL>\n"
        "2024.01.03,10:00,0.6210,0.6212,0.6209,0.6211,40\n",
    )
    assert read_source(f, "csv").bars["ts"].tolist() == [ts("2024-01-03 10:00")]
    f = write(tmp_path / "cadjpy.csv", "date,open,high,low,close\n03/01/2024 10:00,1,1,1,1\n")
    src = read_source(f, "csv", mapping={"ts_format": "%d/%m/%Y %H:%M"})
    assert src.bars["ts"].tolist() == [ts("2024-01-03 10:00")]


def test_parquet(tmp_path, sim_small):
    f = tmp_path / "bars.parquet"
    sim_small.to_parquet(f)
    src = read_source(f, "parquet")
    pd.testing.assert_frame_equal(src.bars, sim_small, check_exact=True)
    assert src.rows[:2].tolist() == [1, 2]
    naive = sim_small.assign(
        ts=sim_small["ts"].dt.tz_convert("America/New_York").dt.tz_localize(None)
    )
    naive.to_parquet(f)
    src = read_source(f, "parquet", tz="America/New_York")
    pd.testing.assert_frame_equal(src.bars, sim_small, check_exact=True)
    with pytest.raises(DataValidationError, match="Parquet"):
        read_source(GENERIC, "parquet")


@pytest.fixture
def sim_small() -> pd.DataFrame:
    from bqx.data.simulator import generate

    return generate(days=2, pairs="EURUSD,USDJPY", seed=11).bars


def test_pair_from_filename():
    assert pair_from_filename("DAT_ASCII_EURUSD_M1_2024.csv") == "EURUSD"
    assert pair_from_filename("USDJPY_Candlestick_1_M_BID_01.01.2024-31.01.2024.csv") == "USDJPY"
    assert pair_from_filename("oanda_eur_gbp.json") == "EURGBP"
    assert pair_from_filename("bars.csv") is None
    assert pair_from_filename("eurusd_vs_usdjpy.csv") is None  # two pairs: ambiguous
    assert pair_from_filename("usdeur.csv") is None  # not in the universe


# =========================================================================================
# unknown pairs and malformed files
# =========================================================================================
def test_unknown_pair_argument_lists_valid_pairs():
    with pytest.raises(UnknownPairError) as e:
        read_source(GENERIC, "csv", pair="XAUUSD")
    assert all(p in str(e.value) for p in PAIRS)


def test_unknown_pair_in_column_is_an_issue_and_hint_lists_pairs(store, tmp_path):
    f = write(
        tmp_path / "mixed.csv",
        HEADER
        + "EURUSD,2024-01-03 10:00,1.1,1.2,1.0,1.1,1,\n"
        + "USDEUR,2024-01-03 10:00,0.9,0.95,0.85,0.9,1,\n",
    )
    rep = validate_file(f)
    assert rep.issues["reason"].tolist() == ["unknown_pair"]
    assert "EURUSD" in rep.issues["detail"].iloc[0]  # the universe quotes it as EURUSD
    with pytest.raises(DataValidationError) as e:
        ingest_file(store, f)
    assert "CHFJPY" in (e.value.hint or "")
    assert len(store.read()) == 0


@pytest.mark.parametrize(
    ("name", "content", "fmt", "match"),
    [
        ("empty_eurusd.csv", "", "csv", "empty"),
        ("blank_eurusd.csv", "\n  \n", "csv", "empty"),
        ("header_eurusd.csv", "ts,open,high,low,close\n", "csv", "no data rows"),
        ("garbage_eurusd.csv", "lorem ipsum dolor\nsit amet\n", "csv", "cannot find a column"),
        ("binary_eurusd.csv", "PAR1\x00\x01\x02garbage", "csv", "binary"),
        ("garbage.json", "{not json", "oanda", "not valid JSON"),
        ("list.json", '{"foo": 1}', "oanda", "not an OANDA"),
        ("nocandles_eurusd.json", '{"instrument":"EUR_USD","candles":[]}', "oanda", "no candles"),
        ("DAT_ASCII_EURUSD_M1.csv", "garbage;text\n", "histdata", "not a HistData"),
        ("duka_usdjpy.csv", "a,b,c\n1,2,3\n", "dukascopy", "not a Dukascopy"),
        ("eurusd.csv", "ts,open,high,low,close\n", "xlsx", "unknown format"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, name, content, fmt, match):
    f = tmp_path / name
    f.write_bytes(content.encode("latin-1"))
    with pytest.raises(BqxError, match=match):
        validate_file(f, fmt)


def test_wrong_column_count_rows_are_reported_with_line_numbers(store, tmp_path):
    f = write(
        tmp_path / "eurusd.csv",
        "ts,open,high,low,close\n"
        "2024-01-03 10:00,1.1,1.2,1.0,1.1\n"
        "\n"  # blank lines are skipped but counted
        "2024-01-03 10:01,1.1,1.2\n"
        "2024-01-03 10:02,1.1,1.2,1.0,1.1,7\n"
        "2024-01-03 10:03,1.1,1.2,1.0,1.1\n",
    )
    rep = validate_file(f)
    assert rep.rows_read == 4
    assert rep.issues["row"].tolist() == [4, 5]
    assert set(rep.issues["reason"]) == {"malformed_row"}
    src = read_source(f)
    assert src.rows.tolist() == [2, 6]
    with pytest.raises(DataValidationError, match="malformed_row: 2"):
        ingest_file(store, f)
    assert len(store.read()) == 0


def test_every_row_malformed(tmp_path):
    f = write(tmp_path / "eurusd.csv", "ts,open,high,low,close\n1,2\n3,4\n")
    rep = validate_file(f)
    assert not rep.ok and rep.rows_read == 2 and rep.rows_rejected == 2


def test_quoted_fields_and_semicolons(tmp_path):
    f = write(
        tmp_path / "quoted.csv",
        'pair;ts;open;high;low;close;note\n"EUR/USD";2024-01-03 10:00;1.1;1.2;1.0;1.1;"a; b"\n\n',
    )
    rep = validate_file(f)
    assert rep.ok, rep.issues
    assert read_source(f).rows.tolist() == [2]


def test_unparseable_ts_reports_raw_value(tmp_path):
    f = write(
        tmp_path / "eurusd.csv",
        "ts,open,high,low,close\n2024-01-03 10:00,1.1,1.2,1.0,1.1\nyesterday,1.1,1.2,1.0,1.1\n",
    )
    rep = validate_file(f)
    assert rep.issues["reason"].tolist() == ["unparseable_ts"]
    assert "'yesterday'" in rep.issues["detail"].iloc[0]
    assert rep.issues["row"].tolist() == [3]


@pytest.mark.parametrize(
    "name, content, fmt, bad_row",
    [
        (
            "eurusd.csv",
            "ts,open,high,low,close\n2024-01-03 10:00,1.1,1.2,1.0,1.1\n"
            "0199-01-03 10:01,1.1,1.2,1.0,1.1\n2024-01-03 10:02,1.1,1.2,1.0,1.1\n",
            None,
            3,
        ),
        (
            "eurusd.csv",
            "ts,open,high,low,close\n2024-01-03T10:00:00Z,1.1,1.2,1.0,1.1\n"
            "3024-01-03T10:01:00Z,1.1,1.2,1.0,1.1\n2024-01-03T10:02:00Z,1.1,1.2,1.0,1.1\n",
            None,
            3,
        ),
        (
            "DAT_ASCII_EURUSD_M1_2024.csv",
            "20240103 050000;1.1;1.2;1.0;1.1;0\n01990103 050100;1.1;1.2;1.0;1.1;0\n"
            "20240103 050200;1.1;1.2;1.0;1.1;0\n",
            "histdata",
            2,
        ),
    ],
)
def test_dates_outside_the_timestamp_range_are_row_issues(tmp_path, name, content, fmt, bad_row):
    """A year-199 typo used to raise OutOfBoundsDatetime for the whole file (and in one
    path turned every row into NaT); now that one row is reported and the rest parse."""
    f = write(tmp_path / name, content)
    rep = validate_file(f, fmt=fmt) if fmt else validate_file(f)
    assert rep.issues["row"].tolist() == [bad_row]
    assert rep.issues["reason"].tolist() == ["unparseable_ts"]
    assert "1677-2262" in rep.issues["detail"].iloc[0]
    src = read_source(f, fmt=fmt) if fmt else read_source(f)
    assert int(src.bars["ts"].notna().sum()) == 2  # the good rows still parse


def test_bad_tz_and_misplaced_options(tmp_path):
    with pytest.raises(DataValidationError, match="time zone"):
        read_source(GENERIC, "csv", tz="Mars/Olympus")
    with pytest.raises(DataValidationError, match="csv and parquet only"):
        read_source(HISTDATA, "histdata", tz="UTC")
    with pytest.raises(DataValidationError, match="csv and parquet only"):
        read_source(OANDA, "oanda", mapping={"ts": "time"})
    with pytest.raises(DataValidationError, match="unknown mapping key"):
        read_source(GENERIC, "csv", mapping={"price": "Close"})
    with pytest.raises(DataValidationError, match="not in the file"):
        read_source(GENERIC, "csv", mapping={"close": "Last"})


# =========================================================================================
# ingestion into the store (DuckDB and PostgreSQL)
# =========================================================================================
@pytest.mark.parametrize(("path", "fmt"), SAMPLES, ids=[f for _, f in SAMPLES])
def test_ingest_is_idempotent(store, path, fmt):
    r1 = ingest_file(store, path, fmt)
    n = r1.rows_read
    assert (r1.upsert.inserted, r1.upsert.updated, r1.upsert.unchanged) == (n, 0, 0)
    assert r1.rows_valid == n and r1.rows_rejected == 0 and r1.quarantine_file is None
    before = store.read()
    fp = store.fingerprint()
    r2 = ingest_file(store, path, fmt)
    assert (r2.upsert.inserted, r2.upsert.updated, r2.upsert.unchanged) == (0, 0, n)
    pd.testing.assert_frame_equal(store.read(), before, check_exact=True)
    assert store.fingerprint() == fp
    d = r2.as_dict()
    json.dumps(d)
    assert d["upsert"] == {"inserted": 0, "updated": 0, "unchanged": n}
    assert set(d["timings"]) >= {"read", "validate", "upsert"}


def test_ingest_values_match_the_file(store):
    ingest_file(store, HISTDATA, "histdata")
    got = store.read("EURUSD")
    assert len(got) == 30
    row = got[got["ts"] == ts("2024-01-02 22:00")].iloc[0]
    line = HISTDATA.read_text().splitlines()[15].split(";")
    assert [row["open"], row["high"], row["low"], row["close"]] == [float(x) for x in line[1:5]]
    assert np.isnan(row["volume"]) and np.isnan(row["spread"])


BAD_FILE = (
    HEADER
    + "EURUSD,2024-01-03 10:00,1.1000,1.1010,1.0990,1.1005,10,0.0001\n"  # 2 good
    + "EURUSD,2024-01-03 10:01,1.1005,1.1012,1.1001,1.1010,11,0.0001\n"  # 3 good
    + "EURUSD,2024-01-03 10:01,1.1005,1.1012,1.1001,1.1011,11,0.0001\n"  # 4 duplicate of 3
    + "EURUSD,2024-01-03 10:02,1.1010,1.1008,1.1001,1.1012,12,0.0001\n"  # 5 high < close
    + "EURUSD,2024-01-03 10:03,1.1012,1.1020,1.1010,1.1015,9,0.0001\n"  # 6 good
    + "EURUSD,2024-01-06 12:00,1.1010,1.1015,1.1001,1.1012,12,0.0001\n"  # 7 Saturday
    + "GBPUSD,2024-01-03 10:00,1.2700,1.2710,1.2690,1.2705,8,0.00012\n"  # 8 good
    + "GBPUSD,2024-01-03 10:01,1.2705\n"  # 9 wrong field count
)
BAD_ROWS = {4: "duplicate", 5: "ohlc_inconsistent", 7: "closed_market", 9: "malformed_row"}


def test_strict_rejection_writes_nothing(store, tmp_path):
    f = write(tmp_path / "bad.csv", BAD_FILE)
    with pytest.raises(DataValidationError) as e:
        ingest_file(store, f)
    assert len(store.read()) == 0
    msg = str(e.value)
    assert "4 of 8 rows are invalid" in msg and "Nothing was written" in msg
    assert "duplicate: 1" in msg and "row 4 duplicate" in msg
    assert "--quarantine" in (e.value.hint or "")
    report = e.value.report
    assert isinstance(report, pd.DataFrame)
    assert dict(zip(report["row"], report["reason"], strict=True)) == BAD_ROWS


def test_strict_rejection_with_one_bad_row_leaves_existing_data_unchanged(store, tmp_path):
    ingest_file(store, GENERIC)
    before = store.read()
    lines = GENERIC.read_text().splitlines()
    cols = lines[5].split(",")
    cols[2] = "0.5"  # high below everything
    lines[5] = ",".join(cols)
    f = write(tmp_path / "generic_audusd_edited.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match="ohlc_inconsistent: 1"):
        ingest_file(store, f)
    pd.testing.assert_frame_equal(store.read(), before, check_exact=True)


def test_quarantine_writes_good_rows_and_saves_bad_ones(store, tmp_path):
    f = write(tmp_path / "bad.csv", BAD_FILE)
    qdir = tmp_path / "q"
    res = ingest_file(store, f, quarantine=True, quarantine_dir=qdir)
    assert res.rows_read == 8
    assert res.rows_valid == 4 and res.rows_rejected == 4
    assert res.rows_valid + res.rows_rejected == res.rows_read
    assert res.upsert.inserted == 4
    got = store.read()
    assert sorted(zip(got["pair"], got["ts"].dt.strftime("%H:%M"), strict=True)) == [
        ("EURUSD", "10:00"),
        ("EURUSD", "10:01"),
        ("EURUSD", "10:03"),
        ("GBPUSD", "10:00"),
    ]
    # the first occurrence of a duplicate is kept (close 1.1010, not 1.1011)
    assert got.loc[got["ts"] == ts("2024-01-03 10:01"), "close"].iloc[0] == 1.1010

    assert res.quarantine_file is not None and res.quarantine_file.parent == qdir
    assert res.quarantine_file.name.startswith("bad-") and res.quarantine_file.suffix == ".csv"
    assert not list(qdir.glob("*.partial"))
    q = pd.read_csv(res.quarantine_file)
    assert dict(zip(q["row"], q["reason"], strict=True)) == BAD_ROWS
    assert list(q.columns[:3]) == ["row", "reason", "detail"]
    lines = BAD_FILE.splitlines()
    assert q["raw"].tolist() == [lines[r - 1] for r in q["row"]]
    dup = q[q["row"] == 4].iloc[0]
    assert dup["close"] == 1.1011 and dup["detail"] == "same pair and ts as row 3"
    assert "high 1.1008 < close 1.1012" in q.loc[q["row"] == 5, "detail"].iloc[0]
    d = res.as_dict()
    assert d["issues_by_reason"] == {
        "malformed_row": 1,
        "ohlc_inconsistent": 1,
        "closed_market": 1,
        "duplicate": 1,
    }
    assert d["quarantine_file"] == str(res.quarantine_file)

    # re-ingesting the same file in quarantine mode changes nothing in the store
    res2 = ingest_file(store, f, quarantine=True, quarantine_dir=qdir)
    assert (res2.upsert.inserted, res2.upsert.updated, res2.upsert.unchanged) == (0, 0, 4)
    assert res2.quarantine_file != res.quarantine_file


def test_quarantine_row_with_several_issues_is_one_line(store, tmp_path):
    f = write(
        tmp_path / "x.csv",
        HEADER
        + "EURUSD,2024-01-03 10:00,1.1,1.2,1.0,1.1,1,\n"
        + "XAUUSD,2024-01-06 10:00,-1,1.2,1.0,1.1,1,\n",
    )
    res = ingest_file(store, f, quarantine=True, quarantine_dir=tmp_path)
    q = pd.read_csv(res.quarantine_file)
    assert q["row"].tolist() == [3]
    assert q["reason"].iloc[0] == "unknown_pair;nonpositive_price;ohlc_inconsistent;closed_market"
    assert len(store.read()) == 1


def test_quarantine_of_a_clean_file_writes_no_file(store, tmp_path):
    res = ingest_file(store, GENERIC, quarantine=True, quarantine_dir=tmp_path / "q")
    assert res.quarantine_file is None and res.rows_rejected == 0
    assert not (tmp_path / "q").exists() or not list((tmp_path / "q").iterdir())


def test_ingest_rejects_bars_off_the_store_grid(store, tmp_path):
    f = write(
        tmp_path / "eurusd.csv",
        "ts,open,high,low,close\n2024-01-03 10:00:00,1.1,1.2,1.0,1.1\n"
        "2024-01-03 10:00:30,1.1,1.2,1.0,1.1\n",
    )
    assert validate_file(f).ok  # no interval given: not checked
    with pytest.raises(DataValidationError, match="misaligned_ts: 1"):
        ingest_file(store, f)
    assert len(store.read()) == 0


def test_ingest_updates_changed_bars(store, tmp_path):
    ingest_file(store, GENERIC)
    lines = GENERIC.read_text().splitlines()
    cols = lines[3].split(",")
    cols[5] = "0.00099"  # different volume
    lines[3] = ",".join(cols)
    f = write(tmp_path / "generic_audusd_v2.csv", "\n".join(lines) + "\n")
    r = ingest_file(store, f)
    assert (r.upsert.inserted, r.upsert.updated) == (0, 1)


def test_missing_fields_are_reported(store):
    r = ingest_file(store, HISTDATA, "histdata")
    d = r.as_dict()
    assert d["missing_fields"] == ["volume", "spread"]
    assert any("volume will be NaN" in n or "need volume" in n for n in d["notes"])


def test_as_dict_limits_issue_records(tmp_path):
    rows = "".join(
        f"2024-01-06 {h:02d}:{m:02d},1.1,1.2,1.0,1.1\n" for h in range(20) for m in range(60)
    )
    f = write(tmp_path / "eurusd.csv", "ts,open,high,low,close\n" + rows)
    d = validate_file(f).as_dict()
    assert d["issue_count"] == 1200 and len(d["issues"]) == 1000 and d["issues_truncated"]
    assert d["issues"][0] == {
        "row": 2,
        "pair": "EURUSD",
        "ts": "2024-01-06T00:00:00+00:00",
        "reason": "closed_market",
        "detail": "Saturday is closed-market time (Fri 22:00 - Sun 21:00 UTC)",
    }
