"""The generic reader ingests the common real-world shapes without --map (issue 15 item 3)
and says what it guessed; small sample files in tests/data/samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqx.data.ingest import read_source, validate_file
from bqx.errors import DataValidationError

SAMPLES = Path(__file__).parent / "samples"
TS = pd.date_range("2024-03-05 10:00", periods=5, freq="1min", tz="UTC")
CLOSE = np.array([1.0850, 1.0851, 1.0853, 1.0852, 1.0854]) + 0.0001


@pytest.mark.parametrize(
    ("name", "fmt", "guess"),
    [
        ("pandas_unnamed_index.csv", "csv", "unnamed first column"),
        ("pandas_date_index.csv", "csv", "ts = 'Date'"),
        ("pandas_unnamed_index.parquet", "parquet", "unnamed first column 'index'"),
        ("pandas_time_index.parquet", "parquet", "ts = 'time'"),
        ("dukascopy.csv", "csv", "ts = 'Gmt time'"),
        ("metatrader.csv", "csv", "'<DATE>' + ' ' + '<TIME>'"),
        ("semicolon_comma.csv", "csv", "comma decimals"),
    ],
)
def test_common_shapes_ingest_without_a_map(name, fmt, guess):
    src = read_source(SAMPLES / name, fmt, pair="EURUSD")
    assert list(pd.DatetimeIndex(src.bars["ts"])) == list(TS), name
    np.testing.assert_allclose(src.bars["close"].to_numpy(), CLOSE, rtol=0, atol=1e-12)
    assert np.isfinite(src.bars[["open", "high", "low"]].to_numpy()).all()
    assert src.bars["volume"].tolist() == [10, 12, 9, 11, 13]
    rep = validate_file(SAMPLES / name, fmt, pair="EURUSD")
    assert rep.ok, rep.issues
    notes = " | ".join(rep.as_dict()["notes"])
    assert guess in notes, notes


def test_unrecognised_columns_are_listed_in_the_error():
    with pytest.raises(DataValidationError) as e:
        read_source(SAMPLES / "unknown_columns.csv", "csv", pair="EURUSD")
    msg = str(e.value)
    assert "cannot find a column for ts, open, high, low, close" in msg
    assert "['when', 'a', 'b']" in msg
