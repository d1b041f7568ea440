"""``bqx data ingest / validate / info`` through the real CLI (Typer CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bqx.cli import app
from bqx.data.ingest import SAMPLES_DIR

runner = CliRunner()

BAD = (
    "pair,ts,open,high,low,close\n"
    "EURUSD,2024-01-03 10:00,1.1000,1.1010,1.0990,1.1005\n"
    "EURUSD,2024-01-03 10:01,1.1005,1.1000,1.0990,1.1008\n"  # high < close
    "EURUSD,2024-01-03 10:02,1.1008,1.1012,1.1001,1.1010\n"
)


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def info() -> dict:
    code, out, _ = run("data", "info", "--json")
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize(
    ("name", "fmt", "pair"),
    [
        ("DAT_ASCII_EURUSD_M1_sample.csv", "histdata", "EURUSD"),
        ("dukascopy_usdjpy_m1.csv", "dukascopy", "USDJPY"),
        ("oanda_gbpusd_m1.json", "oanda", "GBPUSD"),
        ("generic_audusd.csv", "csv", "AUDUSD"),
    ],
)
def test_ingest_sample_then_info(name, fmt, pair):
    code, out, err = run("data", "ingest", str(SAMPLES_DIR / name), "--format", fmt, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["rows_read"] == d["rows_valid"] == d["upsert"]["inserted"] == 30
    assert d["rows_rejected"] == 0 and d["quarantine_file"] is None
    summary = info()
    rows = {p["pair"]: p for p in summary["pairs"]}
    assert rows[pair]["rows"] == 30
    # again: idempotent
    code, out, _ = run("data", "ingest", str(SAMPLES_DIR / name), "-f", fmt, "--json")
    assert code == 0
    assert json.loads(out)["upsert"] == {"inserted": 0, "updated": 0, "unchanged": 30}


def test_ingest_human_output():
    code, out, _ = run("data", "ingest", str(SAMPLES_DIR / "generic_audusd.csv"))
    assert code == 0
    text = " ".join(out.split())  # rich wraps long lines
    assert "read 30 rows, wrote 30 (30 new, 0 updated, 0 unchanged)" in text


def test_validate_exit_codes(tmp_path: Path):
    code, out, _ = run("data", "validate", str(SAMPLES_DIR / "generic_audusd.csv"))
    assert code == 0 and "OK" in out
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    code, out, _ = run("data", "validate", str(bad))
    assert code == 1
    assert "INVALID" in out and "ohlc_inconsistent" in out
    code, out, _ = run("data", "validate", str(bad), "--json")
    assert code == 1
    d = json.loads(out)
    assert d["ok"] is False and d["issues"][0]["row"] == 3
    assert d["issues"][0]["reason"] == "ohlc_inconsistent"


def test_strict_ingest_fails_and_writes_nothing(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    code, out, err = run("data", "ingest", str(bad))
    assert code == 2
    assert "Nothing was written" in err and "--quarantine" in err
    assert "ohlc_inconsistent" in out  # the issues table
    assert info()["pairs"] == []
    code, out, _ = run("data", "ingest", str(bad), "--json")
    assert code == 2
    d = json.loads(out)
    assert d["ok"] is False and d["issues"][0]["reason"] == "ohlc_inconsistent"


def test_quarantine_ingest(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    code, out, err = run("data", "ingest", str(bad), "--quarantine", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["rows_valid"] == 2 and d["rows_rejected"] == 1
    q = Path(d["quarantine_file"])
    assert q.exists() and q.parent.name == "quarantine"
    lines = q.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("3,ohlc_inconsistent,")
    assert {p["pair"]: p["rows"] for p in info()["pairs"]} == {"EURUSD": 2}
    code, out, _ = run("data", "ingest", str(bad), "--quarantine")
    assert code == 0 and "quarantined" in " ".join(out.split())


def test_mapping_and_pair_options(tmp_path: Path):
    f = tmp_path / "export.csv"
    f.write_text("Date,Last,Hi,Lo,First\n2024-01-03 10:00,1.27,1.28,1.26,1.265\n")
    code, _, err = run("data", "ingest", str(f))
    assert code == 2 and "cannot find a column" in err
    code, out, err = run(
        "data",
        "ingest",
        str(f),
        "--pair",
        "GBP/USD",
        "--map",
        "ts=Date,close=Last",
        "--map",
        "high=Hi,low=Lo,open=First",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["missing_fields"] == ["volume", "spread"]
    code, _, err = run("data", "ingest", str(f), "--pair", "XAUUSD", "--map", "ts=Date")
    assert code == 2 and "valid pairs are" in err and "CHFJPY" in err


def test_malformed_file_is_a_clean_error(tmp_path: Path):
    for content in ("", "garbage\x00\x01", "just some words\n"):
        f = tmp_path / "eurusd.csv"
        f.write_bytes(content.encode())
        res = runner.invoke(app, ["data", "ingest", str(f)])
        assert res.exit_code == 2, res.output
        assert isinstance(res.exception, SystemExit)
        assert "error:" in res.stderr


def test_human_issue_table_with_rows_without_timestamp(tmp_path: Path):
    f = tmp_path / "eurusd.csv"
    f.write_text("ts,open,high,low,close\n2024-01-03 10:00,1.1,1.2,1.0,1.1\n2024-01-03 10:01,1.1\n")
    code, out, _ = run("data", "validate", str(f))
    assert code == 1 and "malformed_row" in out
    code, out, _ = run("data", "ingest", str(f))
    assert code == 2 and "malformed_row" in out
