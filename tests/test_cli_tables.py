"""Every rich table fits 80 columns without breaking a word (issue 15 item 2).

Rows are shaped like the CLI's real tables (models list with ISO timestamps and 6-decimal
metrics, metrics of models show, promotion history with free-text reasons, data info,
feature store, API keys-like wide rows); each is rendered at width 80 and every cell's
words must appear whole in the output."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from rich.console import Console

from bqx.cli import _common

LIST_ROW = {
    "pair": "EURUSD",
    "version": "12",
    "model": "lightgbm",
    "approval_status": "PendingManualApproval",
    "aliases": ["production", "champion"],
    "test_r2": 0.00349058123,
    "naive_r2": -0.005505771,
    "test_da": 0.577754,
    "coverage": 0.79481234,
    "created": "2026-11-29T00:12:34.123456+00:00",
}
TABLES = {
    "models list": [dict(LIST_ROW, version=str(v)) for v in range(1, 4)],
    "models show": [
        {
            "segment": "naive last_target (test)",
            "n": 12345,
            "r2": -1.23456789,
            "mae": 1.2e-5,
            "rmse": 2.3456e-5,
            "da": 0.5012345,
        }
    ],
    "history": [
        {
            "ts": pd.Timestamp("2026-11-29 00:12:34.5", tz="UTC"),
            "pair": "EURUSD",
            "action": "promote",
            "from_version": "1",
            "to_version": "2",
            "actor": "alice",
            "reason": "approved after review of the walk-forward report for all twelve windows",
        }
    ],
    "data info": [
        {
            "pair": "EURUSD",
            "bars": 130000,
            "first": pd.Timestamp("2024-01-01", tz="UTC"),
            "last": pd.Timestamp("2024-06-30 23:59", tz="UTC"),
            "missing_pct": 0.0123456,
            "median_spread_pips": 0.812345,
            "volume_source": "tick",
            "store": "duckdb",
        }
    ],
    "very wide": [{f"column_number_{i}": f"value{i}" for i in range(14)}],
}


@pytest.mark.parametrize("name", list(TABLES))
def test_table_fits_80_columns_and_no_word_is_cut(name, monkeypatch):
    con = Console(width=80, record=True, force_terminal=False, color_system=None)
    monkeypatch.setattr(_common, "console", con)
    rows = TABLES[name]
    if name == "models list":
        from bqx.cli.models_cmd import _list_row

        rows = [_list_row(r) for r in rows]
    _common.table(rows, title=name)
    out = con.export_text()
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), max(map(len, lines))
    # every word of every shown cell appears whole on one line
    shown_words = set(re.findall(r"[^\s│┃┏┓┗┛━─┡┩└┘┌┐╇╈┳┻╋┼]+", out))
    hidden = re.search(r"not shown .*?: (.*)", out.replace("\n", " "))
    hidden_cols = {c.strip() for c in hidden.group(1).split(",")} if hidden else set()
    for r in rows:
        for col, v in r.items():
            if col in hidden_cols:
                continue
            for word in _common._fmt(v).split():
                assert word in shown_words, (name, col, word, out)
    if name == "models list":  # short timestamps, 4 significant digits
        assert "2026-11-29" in out and "00:12" in out and "0.00349" in out
        assert ".123456" not in out and "not shown" not in out


def test_table_says_which_columns_it_left_out(monkeypatch):
    con = Console(width=80, record=True, color_system=None)
    monkeypatch.setattr(_common, "console", con)
    _common.table(TABLES["very wide"], title="wide")
    out = " ".join(con.export_text().split())
    assert "not shown" in out and "column_number_13" in out
