"""Issue 18 item 14: a file of one huge line is refused quickly, with a clear error, before it
is parsed (bounded line length; the check streams the file in constant memory)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bqx.data import ingest
from bqx.errors import DataValidationError


def test_one_long_line_is_refused_fast(tmp_path: Path) -> None:
    p = tmp_path / "EURUSD.csv"
    # 16 MB of one line with 4 million delimiters, no newline: before the bound this cost
    # several seconds and hundreds of MB (a 4-million-column header) before failing
    p.write_bytes(b"1.1," * (4 << 20))
    t0 = time.perf_counter()
    with pytest.raises(DataValidationError) as e:
        ingest.read_source(p, "csv")
    assert time.perf_counter() - t0 < 2.0
    assert f"line 1 is longer than {ingest.MAX_LINE_BYTES:,} bytes" in str(e.value)
    # the same for the headerless vendor formats, and a clean file still reads
    h = tmp_path / "DAT_ASCII_EURUSD_M1_2024.csv"
    h.write_bytes(b"20240102 100000;1.1;1.1;1.1;1.1;0\n" * 3 + b"x" * (ingest.MAX_LINE_BYTES + 1))
    with pytest.raises(DataValidationError, match="line 4 is longer"):
        ingest.read_source(h, "histdata")
    h.write_bytes(b"20240102 100000;1.1;1.1;1.1;1.1;0\n" + b"20240102 100100;1.1;1.1;1.1;1.1;0")
    assert len(ingest.read_source(h, "histdata").bars) == 2


def test_line_length_check_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", 64)
    p = tmp_path / "x.csv"
    ok = b"a" * 100 + b"\n" + b"b" * 99 + b"\r\n" + b"c" * 100  # "\r" counts as a byte
    p.write_bytes(ok)
    ingest._check_line_lengths(p, "CSV", 100)  # lines of exactly the limit pass
    p.write_bytes(ok + b"c")
    with pytest.raises(DataValidationError, match="line 3 is longer than 100 bytes"):
        ingest._check_line_lengths(p, "CSV", 100)


def test_oversized_json_document_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ingest, "MAX_JSON_BYTES", 1 << 20)
    p = tmp_path / "EURUSD.json"
    p.write_text(json.dumps({"instrument": "EUR_USD", "candles": [], "pad": "x" * (2 << 20)}))
    with pytest.raises(DataValidationError, match="larger than the 1,048,576-byte limit"):
        ingest.read_source(p, "oanda")
