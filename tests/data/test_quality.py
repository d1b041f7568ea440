"""Row validation (bqx.data.quality): every reason code on a hand-built frame."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from bqx.data.bars import normalize_bars
from bqx.data.quality import (
    ISSUE_COLUMNS,
    REASONS,
    combine_issues,
    make_issues,
    summarize,
    validate_bars,
)
from bqx.data.simulator import generate


def bars(*rows: tuple) -> pd.DataFrame:
    """Bars from (pair, ts, open, high, low, close[, volume, spread]) tuples, in that order."""
    recs = []
    for r in rows:
        pair, ts, o, h, lo, c, *rest = r
        vol, spr = [*rest, np.nan, np.nan][:2]
        recs.append(
            {
                "pair": pair,
                "ts": pd.Timestamp(ts, tz="UTC") if ts is not None else pd.NaT,
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": vol,
                "spread": spr,
            }
        )
    return normalize_bars(pd.DataFrame(recs), sort=False)


GOOD = ("EURUSD", "2024-01-03 10:00", 1.10, 1.12, 1.09, 1.11, 10, 0.0001)


def reasons_by_row(issues: pd.DataFrame) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r, reason in zip(issues["row"], issues["reason"], strict=True):
        out.setdefault(int(r), []).append(reason)
    return out


def test_clean_simulated_data_has_no_issues():
    sim = generate(days=3, pairs="EURUSD,USDJPY", seed=3).bars
    issues = validate_bars(sim, interval=timedelta(minutes=1))
    assert list(issues.columns) == list(ISSUE_COLUMNS)
    assert len(issues) == 0


def test_issue_frame_dtypes_and_default_rows():
    df = bars(GOOD, ("EURUSD", "2024-01-03 10:01", 1.1, 1.0, 1.09, 1.11))
    issues = validate_bars(df)
    assert list(issues.columns) == list(ISSUE_COLUMNS)
    assert issues["row"].dtype == np.int64
    assert str(issues["ts"].dtype) == "datetime64[ns, UTC]"
    assert issues["row"].tolist() == [2]  # rows default to 1..n
    assert issues["reason"].tolist() == ["ohlc_inconsistent"]
    assert issues["pair"].tolist() == ["EURUSD"]
    assert issues["ts"].iloc[0] == pd.Timestamp("2024-01-03 10:01", tz="UTC")


@pytest.mark.parametrize(
    ("row", "reason", "detail_part"),
    [
        (("EURUSD", "2024-01-03 10:01", np.nan, 1.12, 1.09, 1.11), "nan_price", "open is missing"),
        (("EURUSD", "2024-01-03 10:01", 1.1, np.inf, 1.09, 1.11), "nan_price", "high is"),
        (("EURUSD", "2024-01-03 10:01", -1.0, -1.0, -1.0, -1.0), "nonpositive_price", "close -1.0"),
        (("EURUSD", "2024-01-03 10:01", 0.0, 0.0, 0.0, 0.0), "nonpositive_price", "open 0.0 <= 0"),
        (
            ("EURUSD", "2024-01-03 10:01", 1.1, 1.1, 1.09, 1.2),
            "ohlc_inconsistent",
            "high 1.1 < close 1.2",
        ),
        (
            ("EURUSD", "2024-01-03 10:01", 1.1, 1.3, 1.15, 1.2),
            "ohlc_inconsistent",
            "low 1.15 > open 1.1",
        ),
        (("EURUSD", "2024-01-03 10:01", 1.1, 1.05, 1.06, 1.1), "ohlc_inconsistent", "high 1.05 <"),
        (
            ("EURUSD", "2024-01-03 10:01", 1.1, 1.12, 1.09, 1.11, -3),
            "negative_volume",
            "volume -3.0",
        ),
        (
            ("EURUSD", "2024-01-03 10:01", 1.1, 1.12, 1.09, 1.11, 5, -1e-4),
            "negative_spread",
            "spread",
        ),
        (("EURUSD", "2024-01-06 12:00", 1.1, 1.12, 1.09, 1.11), "closed_market", "Saturday"),
        (("EURUSD", "2024-01-05 22:00", 1.1, 1.12, 1.09, 1.11), "closed_market", "Friday"),
        (("EURUSD", "2024-01-07 20:59", 1.1, 1.12, 1.09, 1.11), "closed_market", "Sunday"),
        (("XAUUSD", "2024-01-03 10:01", 1.1, 1.12, 1.09, 1.11), "unknown_pair", "XAUUSD"),
        (("USDEUR", "2024-01-03 10:01", 1.1, 1.12, 1.09, 1.11), "unknown_pair", "EURUSD"),
        (("EURUSD", None, 1.1, 1.12, 1.09, 1.11), "unparseable_ts", "timestamp"),
        (("EURUSD", "2024-01-03 10:00", 1.1, 1.12, 1.09, 1.11), "duplicate", "as row 1"),
        (("EURUSD", "2024-01-03 09:59", 1.1, 1.12, 1.09, 1.11), "non_monotonic", "(row 1)"),
    ],
)
def test_each_reason_is_detected(row, reason, detail_part):
    issues = validate_bars(bars(GOOD, row))
    assert issues["row"].tolist() == [2], issues
    assert issues["reason"].tolist() == [reason]
    assert detail_part in issues["detail"].iloc[0]


def test_edge_hours_are_not_closed_market():
    # Friday 21:xx and Sunday 21:xx UTC are open under one vendor convention: kept
    df = bars(
        ("EURUSD", "2024-01-05 21:59", 1.1, 1.12, 1.09, 1.11),
        ("EURUSD", "2024-01-07 21:00", 1.1, 1.12, 1.09, 1.11),
    )
    assert len(validate_bars(df)) == 0


def test_misaligned_only_with_interval():
    df = bars(GOOD, ("EURUSD", "2024-01-03 10:01:30", 1.1, 1.12, 1.09, 1.11))
    assert len(validate_bars(df)) == 0
    issues = validate_bars(df, interval=timedelta(minutes=1))
    assert issues["reason"].tolist() == ["misaligned_ts"]
    assert "30.0 s past the 1-minute" in issues["detail"].iloc[0]
    hourly = validate_bars(bars(GOOD), interval=timedelta(hours=1))
    assert len(hourly) == 0  # 10:00 is on the hourly grid


def test_every_later_duplicate_is_flagged_not_the_first():
    df = bars(GOOD, GOOD, ("GBPUSD", *GOOD[1:]), GOOD)
    issues = validate_bars(df)
    assert reasons_by_row(issues) == {2: ["duplicate"], 4: ["duplicate"]}
    assert issues["detail"].tolist() == ["same pair and ts as row 1"] * 2


def test_non_monotonic_is_per_pair_in_file_order():
    t = [f"2024-01-03 10:0{i}" for i in range(6)]
    df = bars(
        ("EURUSD", t[1], 1.1, 1.12, 1.09, 1.11),
        ("GBPUSD", t[0], 1.1, 1.12, 1.09, 1.11),  # other pair: earlier is fine
        ("EURUSD", t[3], 1.1, 1.12, 1.09, 1.11),
        ("EURUSD", t[2], 1.1, 1.12, 1.09, 1.11),  # earlier than the previous EURUSD row
        ("EURUSD", t[4], 1.1, 1.12, 1.09, 1.11),
    )
    issues = validate_bars(df)
    assert reasons_by_row(issues) == {4: ["non_monotonic"]}
    assert "previous row of this pair (row 3)" in issues["detail"].iloc[0]


def test_several_issues_on_one_row_and_custom_row_numbers():
    df = bars(GOOD, ("XXXYYY", "2024-01-06 12:00", 1.1, 1.0, 1.2, -1.0, -5))
    issues = validate_bars(df, rows=np.array([10, 12]))
    assert set(issues["row"]) == {12}
    assert issues["reason"].tolist() == [
        "unknown_pair",
        "nonpositive_price",
        "ohlc_inconsistent",
        "negative_volume",
        "closed_market",
    ]
    assert summarize(issues) == {r: 1 for r in issues["reason"]}


def test_rows_length_must_match():
    with pytest.raises(ValueError, match="rows"):
        validate_bars(bars(GOOD), rows=np.array([1, 2]))


def test_missing_columns_raise_and_empty_frame_is_fine():
    with pytest.raises(ValueError, match="lacks columns"):
        validate_bars(pd.DataFrame({"pair": ["EURUSD"]}))
    empty = normalize_bars(pd.DataFrame(columns=["pair", "ts", "open", "high", "low", "close"]))
    assert len(validate_bars(empty)) == 0


def test_works_on_a_frame_without_volume_spread_and_naive_ts():
    df = pd.DataFrame(
        {
            "pair": ["EURUSD", "EURUSD"],
            "ts": ["2024-01-03 10:00", "not a time"],
            "open": [1.1, 1.1],
            "high": [1.2, 1.2],
            "low": [1.0, 1.0],
            "close": [1.1, 1.1],
        }
    )
    issues = validate_bars(df)
    assert issues["reason"].tolist() == ["unparseable_ts"]


def test_combine_keeps_first_issue_per_row_and_reason():
    a = make_issues([3], ["EURUSD"], [pd.NaT], "unparseable_ts", ["cannot parse 'x'"])
    b = make_issues(
        [3, 1], ["EURUSD", "EURUSD"], [pd.NaT, pd.NaT], "unparseable_ts", ["generic", "generic"]
    )
    out = combine_issues(a, b)
    assert out["row"].tolist() == [1, 3]
    assert out["detail"].tolist() == ["generic", "cannot parse 'x'"]


def test_reason_codes_are_stable():
    assert REASONS == (
        "malformed_row",
        "unparseable_ts",
        "unknown_pair",
        "incomplete_candle",
        "nan_price",
        "nonpositive_price",
        "ohlc_inconsistent",
        "negative_volume",
        "negative_spread",
        "misaligned_ts",
        "closed_market",
        "duplicate",
        "non_monotonic",
    )


def test_vectorised_on_a_large_frame():
    sim = generate(days=10, seed=5).bars  # ~200k rows, all 28 pairs
    bad = sim.copy()
    bad.loc[::1000, "high"] = bad.loc[::1000, "low"] - 0.001
    issues = validate_bars(bad.sample(frac=1.0, random_state=1).reset_index(drop=True))
    counts = summarize(issues)
    assert counts["ohlc_inconsistent"] == len(bad.loc[::1000])
    assert counts["non_monotonic"] > 0  # shuffled
