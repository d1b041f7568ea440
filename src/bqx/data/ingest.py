"""Ingestion: read vendor files into canonical bars, validate every row, upsert atomically.

Three steps, each usable on its own:

1. :func:`read_source` parses one file of one of :data:`FORMATS` into a :class:`SourceFrame`:
   canonical bars in *file order*, the source row number of every bar, and parse-level
   issues (lines with the wrong number of fields, unparseable timestamps, incomplete candles).
2. :func:`validate_file` adds the row checks of :func:`bqx.data.quality.validate_bars`
   (OHLC consistency, duplicates, non-monotonic time, NaN/non-positive prices, closed-market
   bars, unknown pairs) and reports, writing nothing.
3. :func:`ingest_file` does both and upserts. **Strict by default**: any issue rejects the
   whole file with a :class:`~bqx.errors.DataValidationError` (its ``report`` is the issues
   frame) and nothing is written. With ``quarantine=True`` the good rows are upserted and the
   bad ones saved, with their reasons, to a CSV file. The upsert is one transaction either
   way (see :meth:`bqx.data.store.BarStore.upsert`): never a partial, silent write.

Row numbers (the ``row`` column of every report) point into the source file: for text
formats (csv, histdata, dukascopy) the 1-based physical line number, header included (so the
first bar of a CSV with a header is row 2, of a header-less HistData file row 1); for
Parquet the 1-based row index; for OANDA JSON the 1-based index of the candle in the file
(counting across pages when the file holds a list of responses). Text formats must hold one
record per line: quoted fields containing the delimiter or a line break are not supported.

Formats
-------
``csv`` / ``parquet``
    Generic tables with a header. Columns are found by name, case-insensitively (ts:
    timestamp/time/date/datetime/gmt time/...; open/o, high/h, low/l, close/c; volume:
    vol/volume/tick_volume/tickvol/ticks; spread; pair: pair/symbol/instrument/ticker;
    separate ``Date`` and ``Time`` columns, as in MetaTrader exports, are combined) or given
    by ``mapping={"ts": "Date", "close": "Last", ...}`` (canonical name -> source column; the
    extra key ``ts_format`` gives a strptime format such as ``%d.%m.%Y %H:%M``). Naive
    timestamps are in ``tz`` (default UTC), aware ones are converted; integer/float epoch
    seconds, milliseconds, microseconds or nanoseconds are recognised by magnitude. The pair
    comes from a pair column, else ``pair=``, else the file name when it names exactly one
    of the 28 pairs. The CSV delimiter (``,`` ``;`` tab ``|``) is sniffed from the header.
``histdata``
    HistData.com M1 ASCII: no header, ``YYYYMMDD HHMMSS;open;high;low;close;volume``, stamped
    in EST *without* daylight saving (fixed UTC-5 all year), so +5 h gives UTC. The volume
    column of these files is always 0: it is stored as missing (NaN).
``dukascopy``
    Dukascopy CSV export, header ``Gmt time,Open,High,Low,Close,Volume`` with stamps
    ``01.01.2024 00:00:00.000`` (day.month.year, GMT), or the ``Local time`` variant whose
    stamps end in the UTC offset (`` GMT+0200``), which is applied. The export is one side
    of the book (BID or ASK, as named in its file name), stored as is. Its ``Volume`` is
    *traded volume in millions of units*, not a tick count; it is stored in ``volume``
    anyway (a liquidity proxy on a different scale: do not mix sources for one pair).
    No spread.
``oanda``
    OANDA v20 candles JSON (the body of ``GET /v3/instruments/{i}/candles``, or a list of
    such bodies). OHLC from ``mid``, or (bid + ask) / 2 when mid is absent; spread = the mean
    over o, h, l, c of (ask - bid) when both sides are present; volume = tick count.
    ``time`` may be RFC 3339 (nanoseconds) or UNIX seconds. Candles with
    ``complete: false`` are reported as ``incomplete_candle``.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqx.data.bars import BAR_COLUMNS, VALUE_COLUMNS, as_ns
from bqx.data.quality import (
    combine_issues,
    empty_issues,
    make_issues,
    summarize,
    validate_bars,
)
from bqx.errors import BqxError, DataValidationError
from bqx.universe import PAIRS, normalize_pair

#: Input formats understood by :func:`read_source` (and ``bqx data ingest --format``).
FORMATS: tuple[str, ...] = ("csv", "parquet", "histdata", "dukascopy", "oanda")

#: Keys a ``mapping`` may use: the canonical bar columns plus ``ts_format``.
MAPPING_KEYS: tuple[str, ...] = (*BAR_COLUMNS, "ts_format")

#: Small example files of every format (shipped with the package; used by tests and docs).
SAMPLES_DIR = Path(__file__).parent / "samples"

#: Number of issue records kept in ``as_dict()`` output (the count is always complete).
AS_DICT_ISSUE_LIMIT = 1000

#: HistData stamps are EST without daylight saving: UTC = stamp + 5 h, all year.
HISTDATA_UTC_OFFSET = pd.Timedelta(hours=5)

_ALIASES: dict[str, tuple[str, ...]] = {
    # in priority order: the first alias present wins
    "ts": (
        "ts",
        "timestamp",
        "datetime",
        "date time",
        "gmt time",
        "time (utc)",
        "utc time",
        "time utc",
        "local time",
        "time",
        "date",
    ),
    "open": ("open", "o", "open price", "openprice"),
    "high": ("high", "h", "high price", "highprice"),
    "low": ("low", "l", "low price", "lowprice"),
    "close": ("close", "c", "close price", "closeprice"),
    "volume": ("volume", "vol", "tick volume", "tickvol", "tick vol", "tickvolume", "ticks"),
    "spread": ("spread",),
    "pair": ("pair", "symbol", "instrument", "ticker"),
}
_REQUIRED = ("ts", "open", "high", "low", "close")
_MISSING_NOTES = {
    "volume": "the source has no volume: features that need volume will be NaN",
    "spread": "the source has no spread: features and cost estimates that need it will be NaN",
}
_NUMBER = re.compile(r"\s*-?\d+(\.\d+)?\s*")
_TZ_SUFFIX = re.compile(r"(?:[zZ]|[+-]\d{2}:?\d{2}|\b(?:UTC|GMT))\s*$")


# =========================================================================================
# results
# =========================================================================================
@dataclass
class SourceFrame:
    """One parsed file.

    ``bars`` is a canonical bar frame (see :mod:`bqx.data.bars`) in *file order*, not sorted,
    possibly holding NaT timestamps or NaN prices (validation flags them). ``rows[i]`` is the
    source row number of ``bars.iloc[i]`` (see the module docs). ``issues`` holds parse-level
    problems, including lines that produced no bar at all (``malformed_row``).
    ``missing_fields`` lists canonical fields the source does not have (e.g. ``["spread"]``).
    ``rows_read`` counts every data record of the file, malformed ones included.
    """

    bars: pd.DataFrame
    rows: np.ndarray
    issues: pd.DataFrame
    missing_fields: list[str]
    rows_read: int = -1
    raw: Callable[[np.ndarray], list[str]] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rows_read < 0:
            self.rows_read = len(self.bars)

    def raw_records(self, rows: np.ndarray) -> list[str]:
        """The original text of the given source rows ("" when the format has none)."""
        if self.raw is None:
            return [""] * len(rows)
        return self.raw(np.asarray(rows, dtype=np.int64))


@dataclass
class ValidationReport:
    """What :func:`validate_file` found. ``issues`` has parse and validation issues."""

    path: Path
    format: str
    rows_read: int
    issues: pd.DataFrame
    ok: bool
    missing_fields: list[str]
    guessed: list[str] = field(default_factory=list)  # column guesses, in words

    @property
    def rows_rejected(self) -> int:
        return int(self.issues["row"].nunique()) if len(self.issues) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "ok": self.ok,
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "missing_fields": list(self.missing_fields),
            "notes": self.guessed + _notes(self.missing_fields),
            **_issues_dict(self.issues),
        }


@dataclass
class IngestResult:
    """What :func:`ingest_file` did. ``seconds`` is wall time; ``timings`` splits it into
    ``read`` (parse), ``validate``, ``upsert`` and ``quarantine`` seconds."""

    path: Path
    format: str
    rows_read: int
    rows_valid: int
    rows_rejected: int
    upsert: Any  # bqx.data.store.UpsertResult
    quarantine_file: Path | None
    issues: pd.DataFrame
    missing_fields: list[str]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    guessed: list[str] = field(default_factory=list)  # column guesses, in words

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_valid": self.rows_valid,
            "rows_rejected": self.rows_rejected,
            "upsert": self.upsert.as_dict(),
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
            "missing_fields": list(self.missing_fields),
            "notes": self.guessed + _notes(self.missing_fields),
            **_issues_dict(self.issues),
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


# =========================================================================================
# public API
# =========================================================================================
def read_source(
    path: str | Path,
    fmt: str = "csv",
    *,
    pair: str | None = None,
    mapping: Mapping[str, str] | None = None,
    tz: str | None = None,
) -> SourceFrame:
    """Parse ``path`` as ``fmt`` (one of :data:`FORMATS`) into a :class:`SourceFrame`.

    Raises :class:`~bqx.errors.DataValidationError` when the file as a whole cannot be read
    (empty, not of the format, no timestamp column, pair unknowable, ...) and
    :class:`~bqx.errors.UnknownPairError` for a bad ``pair``. Row-level problems do not
    raise: they are returned as issues.
    """
    p = Path(path)
    f = str(fmt).strip().lower()
    if f not in FORMATS:
        raise DataValidationError(
            f"unknown format {fmt!r}; valid formats are: {', '.join(FORMATS)}"
        )
    if not p.is_file():
        raise DataValidationError(f"{p}: no such file")
    fixed_pair = normalize_pair(pair) if pair is not None else None
    if f not in ("csv", "parquet"):
        if mapping:
            raise DataValidationError(
                f"a column mapping applies to csv and parquet only, not to {f}",
                hint=f"the {f} layout is fixed; drop --map",
            )
        if tz is not None:
            raise DataValidationError(
                f"--tz applies to csv and parquet only: {f} timestamps carry a known zone",
                hint="drop --tz",
            )
    if f == "csv":
        return _read_csv(p, fixed_pair, mapping, tz)
    if f == "parquet":
        return _read_parquet(p, fixed_pair, mapping, tz)
    if f == "histdata":
        return _read_histdata(p, fixed_pair)
    if f == "dukascopy":
        return _read_dukascopy(p, fixed_pair)
    return _read_oanda(p, fixed_pair)


def validate_file(
    path: str | Path,
    fmt: str = "csv",
    *,
    pair: str | None = None,
    mapping: Mapping[str, str] | None = None,
    tz: str | None = None,
    interval: timedelta | None = None,
) -> ValidationReport:
    """Read and check ``path`` without writing anything.

    ``interval`` (the store's bar interval) also checks that timestamps lie on the bar grid,
    as :func:`ingest_file` does.
    """
    src = read_source(path, fmt, pair=pair, mapping=mapping, tz=tz)
    issues = combine_issues(src.issues, validate_bars(src.bars, src.rows, interval=interval))
    return ValidationReport(
        path=Path(path),
        format=str(fmt).lower(),
        rows_read=src.rows_read,
        issues=issues,
        ok=not len(issues),
        missing_fields=src.missing_fields,
        guessed=list(src.bars.attrs.get("guessed", [])),
    )


def ingest_file(
    store: Any,
    path: str | Path,
    fmt: str = "csv",
    *,
    pair: str | None = None,
    mapping: Mapping[str, str] | None = None,
    tz: str | None = None,
    quarantine: bool = False,
    quarantine_dir: str | Path | None = None,
) -> IngestResult:
    """Validate ``path`` and upsert its bars into ``store`` (a :class:`~bqx.data.store.BarStore`).

    Strict (default): any issue raises :class:`~bqx.errors.DataValidationError` naming the
    counts by reason and the first bad rows (``.report`` is the issues frame); nothing is
    written. ``quarantine=True``: every source row with any issue is left out (for
    duplicates the first occurrence stays in), the rest is upserted in one transaction, and
    the bad rows (parsed values, original text, reasons) are saved to
    ``quarantine_dir/<file stem>-<UTC time>.csv`` (default: the project's quarantine dir).
    Timestamps must lie on the store's bar grid (``misaligned_ts`` otherwise).
    """
    from bqx.data.store import UpsertResult

    p = Path(path)
    t0 = time.perf_counter()
    src = read_source(p, fmt, pair=pair, mapping=mapping, tz=tz)
    t1 = time.perf_counter()
    interval = getattr(store, "interval", None)
    issues = combine_issues(src.issues, validate_bars(src.bars, src.rows, interval=interval))
    t2 = time.perf_counter()
    timings = {"read": t1 - t0, "validate": t2 - t1}

    if len(issues) and not quarantine:
        raise DataValidationError(
            _reject_message(p, src.rows_read, issues),
            issues,
            hint=_reject_hint(issues),
        )

    bad_rows = np.unique(issues["row"].to_numpy(dtype=np.int64)) if len(issues) else None
    good = src.bars if bad_rows is None else src.bars[~np.isin(src.rows, bad_rows)]
    q_tmp: Path | None = None
    q_final: Path | None = None
    if bad_rows is not None:
        tq = time.perf_counter()
        qdir = Path(quarantine_dir) if quarantine_dir is not None else _default_quarantine_dir()
        q_final = _quarantine_path(qdir, p)
        q_tmp = q_final.with_name(q_final.name + ".partial")
        _write_quarantine(q_tmp, src, issues)
        timings["quarantine"] = time.perf_counter() - tq
    tu = time.perf_counter()
    try:
        up = store.upsert(good) if len(good) else UpsertResult(0, 0, 0)
    except BaseException:
        if q_tmp is not None:
            q_tmp.unlink(missing_ok=True)
        raise
    timings["upsert"] = time.perf_counter() - tu
    if q_tmp is not None and q_final is not None:
        q_tmp.replace(q_final)
    rejected = len(bad_rows) if bad_rows is not None else 0
    return IngestResult(
        path=p,
        format=str(fmt).lower(),
        rows_read=src.rows_read,
        rows_valid=len(good),
        rows_rejected=rejected,
        upsert=up,
        quarantine_file=q_final,
        issues=issues,
        missing_fields=src.missing_fields,
        seconds=time.perf_counter() - t0,
        timings=timings,
        guessed=list(src.bars.attrs.get("guessed", [])),
    )


# =========================================================================================
# reporting helpers
# =========================================================================================
def _notes(missing: list[str]) -> list[str]:
    return [_MISSING_NOTES[m] for m in missing if m in _MISSING_NOTES]


def _issue_records(issues: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    head = issues.head(limit)
    for row, pair, ts, reason, detail in zip(
        head["row"], head["pair"], head["ts"], head["reason"], head["detail"], strict=True
    ):
        out.append(
            {
                "row": int(row),
                "pair": None if pair is None or pd.isna(pair) else str(pair),
                "ts": None if pd.isna(ts) else pd.Timestamp(ts).isoformat(),
                "reason": str(reason),
                "detail": None if detail is None or pd.isna(detail) else str(detail),
            }
        )
    return out


def _issues_dict(issues: pd.DataFrame) -> dict[str, Any]:
    return {
        "issue_count": len(issues),
        "issues_by_reason": summarize(issues),
        "issues": _issue_records(issues, AS_DICT_ISSUE_LIMIT),
        "issues_truncated": len(issues) > AS_DICT_ISSUE_LIMIT,
    }


def _reject_message(path: Path, rows_read: int, issues: pd.DataFrame) -> str:
    n_bad = int(issues["row"].nunique())
    counts = ", ".join(f"{k}: {v:,}" for k, v in summarize(issues).items())
    first = "; ".join(
        f"row {int(r)} {reason} ({detail})"
        for r, reason, detail in zip(
            issues["row"].head(5), issues["reason"].head(5), issues["detail"].head(5), strict=True
        )
    )
    return (
        f"{path.name}: {n_bad:,} of {rows_read:,} rows are invalid ({counts}); "
        f"first: {first}. Nothing was written."
    )


def _reject_hint(issues: pd.DataFrame) -> str:
    hint = (
        "fix the file, or ingest with --quarantine to write the good rows and save the bad "
        "ones with their reasons"
    )
    if (issues["reason"] == "unknown_pair").any():
        hint += f"; valid pairs are: {', '.join(PAIRS)}"
    return hint


def _default_quarantine_dir() -> Path:
    from bqx.config import load_settings

    return Path(load_settings().quarantine_dir)


def _quarantine_path(qdir: Path, source: Path) -> Path:
    qdir.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    out = qdir / f"{source.stem}-{stamp}.csv"
    k = 2
    while out.exists() or out.with_name(out.name + ".partial").exists():
        out = qdir / f"{source.stem}-{stamp}-{k}.csv"
        k += 1
    return out


def _write_quarantine(path: Path, src: SourceFrame, issues: pd.DataFrame) -> None:
    """One line per bad source row: row, reasons (``;``-joined), details, parsed values
    (ts in UTC), and ``raw``, the original text of the record."""
    iss = issues[["row", "reason", "detail"]].assign(detail=issues["detail"].astype(str))
    multi = iss["row"].duplicated(keep=False).to_numpy()
    # most bad rows have one issue: only rows with several go through the (slow) join
    joined = (
        iss[multi]
        .groupby("row", sort=False)
        .agg(reason=("reason", ";".join), detail=("detail", " | ".join))
        .reset_index()
    )
    grouped = pd.concat([iss[~multi], joined], ignore_index=True).sort_values("row", kind="stable")
    values = src.bars.assign(row=src.rows)
    values = values[values["row"].isin(grouped["row"])]
    out = grouped.merge(values, on="row", how="left", sort=False)
    out["ts"] = pd.DatetimeIndex(out["ts"]).strftime("%Y-%m-%d %H:%M:%S+00:00")
    out["raw"] = src.raw_records(out["row"].to_numpy(dtype=np.int64))
    cols = ["row", "reason", "detail", *BAR_COLUMNS, "raw"]
    out[cols].to_csv(path, index=False)


# =========================================================================================
# generic text reading
# =========================================================================================
@dataclass
class _Text:
    """A delimited text file split into records: ``frame`` (raw columns, arrow-backed
    strings or numbers), ``rows`` (1-based line numbers) and malformed lines."""

    frame: pd.DataFrame
    rows: np.ndarray
    malformed_rows: np.ndarray
    malformed_text: list[str]
    data: bytes


#: longest line accepted in a text file (bytes). A bar is < 200 bytes; a longer line is not
#: a bar file, and parsing one giant line is slow and memory-hungry (issue 18 reports a 50 MB
#: single-line file taking 30 s and 2.9 GB), so it is refused after reading this much.
MAX_LINE_BYTES = 1 << 20
#: largest OANDA JSON document accepted (bytes): ``json.loads`` needs many times the file
#: size in memory; the v20 API returns at most 5,000 candles (~1 MB) per response.
MAX_JSON_BYTES = 256 << 20
_CHUNK = 8 << 20


def _check_line_lengths(path: Path, what: str, limit: int) -> None:
    """Stream ``path`` in fixed chunks (constant memory) and stop at the first line longer than
    ``limit`` bytes, with a clear error, before anything is parsed."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    line_no, run = 1, 0  # run: bytes of the current line so far
    with path.open("rb") as f:
        while n := f.readinto(buf):
            nl = np.flatnonzero(np.frombuffer(view[:n], dtype=np.uint8) == 10)
            if len(nl):
                lens = np.diff(np.concatenate(([-1], nl)))
                lens[0] += run
                over = np.flatnonzero(lens - 1 > limit)
                if len(over):
                    _line_too_long(path, what, line_no + int(over[0]), limit)
                line_no += len(nl)
                run = n - 1 - int(nl[-1])
            else:
                run += n
            if run > limit:
                _line_too_long(path, what, line_no, limit)


def _line_too_long(path: Path, what: str, line: int, limit: int) -> None:
    raise DataValidationError(
        f"{path.name}: line {line} is longer than {limit:,} bytes; a {what} file holds one "
        "bar per line (is it another format, or missing its line breaks?)",
        hint="check the file and --format; split it into lines of one record each",
    )


def _load_bytes(path: Path, what: str, *, document: bool = False) -> bytes:
    """The file's bytes, after bounding what parsing them can cost: line length for text
    formats (streamed check), total size for a one-document format (``document=True``)."""
    try:
        if document:
            size = path.stat().st_size
            if size > MAX_JSON_BYTES:
                raise DataValidationError(
                    f"{path.name} is {size:,} bytes: larger than the {MAX_JSON_BYTES:,}-byte "
                    "limit for one OANDA JSON document",
                    hint="split it into one file per API response (<= 5,000 candles each)",
                )
        else:
            _check_line_lengths(path, what, MAX_LINE_BYTES)
        data = path.read_bytes()
    except OSError as e:
        raise DataValidationError(f"cannot read {path}: {e}") from e
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise DataValidationError(f"{path.name} is empty: no {what} data to read")
    if b"\x00" in data[:4096]:
        hint = "use --format parquet" if data.startswith(b"PAR1") else None
        raise DataValidationError(f"{path.name} looks binary, not a {what} text file", hint=hint)
    return data


def _line_index(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte offsets of every line (end excludes ``\\r\\n``)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(buf)])).astype(np.int64)
    if starts[-1] >= len(buf):  # the file ends with a newline
        starts, ends = starts[:-1], ends[:-1]
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    return starts, ends - cr


def _line_texts(data: bytes, rows: np.ndarray) -> list[str]:
    """The text of the given 1-based lines of ``data``."""
    starts, ends = _line_index(data)
    out = []
    for r in np.asarray(rows, dtype=np.int64).tolist():
        if 1 <= r <= len(starts):
            out.append(data[starts[r - 1] : ends[r - 1]].decode("utf-8", errors="replace"))
        else:
            out.append("")
    return out


def _first_line(data: bytes) -> str:
    """The first non-blank line (without copying the rest of a large file)."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        if line.strip():
            return line.decode("utf-8", errors="replace").strip("\r\n")
        pos = end + 1
    return ""


def _sniff_sep(line: str) -> str:
    counts = {s: line.count(s) for s in (",", ";", "\t", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def _split_header(line: str, sep: str) -> list[str]:
    return [c.strip().strip('"').strip("'").strip() for c in line.split(sep)]


def _read_text(
    path: Path,
    data: bytes,
    *,
    sep: str,
    names: list[str] | None,
    string_columns: list[str],
) -> _Text:
    """Split ``data`` into records with pyarrow, keeping exact line numbers.

    ``names=None`` means the first non-blank line is a header. Blank lines are skipped; lines
    with the wrong number of fields are returned as malformed instead of failing the file.
    The fast path (the common clean file) reads once; otherwise the line structure is worked
    out with numpy and only well-formed lines are handed to pyarrow.
    """
    header = names is None
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    first_blank = not data[: data.find(b"\n") if b"\n" in data else len(data)].strip()
    if not first_blank:
        invalid: list[int] = []

        def on_invalid(_row: Any) -> str:
            invalid.append(1)
            return "skip"

        table = _arrow_csv(path, data, sep, names, string_columns, on_invalid)
        n_data = n_lines - (1 if header else 0)
        if not invalid and table.num_rows == n_data:
            start = 2 if header else 1
            rows = np.arange(start, start + n_data, dtype=np.int64)
            return _Text(table.to_pandas(), rows, np.array([], np.int64), [], data)

    # slow path: classify every line with numpy, then parse the well-formed ones
    starts, ends = _line_index(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    dpos = np.flatnonzero(buf == ord(sep))
    if b'"' in data:
        # a delimiter inside a quoted field does not count: odd number of quotes before it
        # on its line (fields may not contain line breaks)
        qpos = np.flatnonzero(buf == ord('"'))
        line_of = np.searchsorted(starts, dpos, side="right") - 1
        before = np.searchsorted(qpos, dpos) - np.searchsorted(qpos, starts[line_of])
        dpos = dpos[before % 2 == 0]
    nfields = np.searchsorted(dpos, ends) - np.searchsorted(dpos, starts) + 1
    blank = ends == starts
    for i in np.flatnonzero((nfields == 1) & ~blank).tolist():
        if not data[starts[i] : ends[i]].strip():
            blank[i] = True
    nonblank = np.flatnonzero(~blank)
    if header:
        if not len(nonblank):
            raise DataValidationError(f"{path.name} is empty")
        head_i = int(nonblank[0])
        expected = int(nfields[head_i])
        data_lines = nonblank[1:]
    else:
        assert names is not None
        head_i = -1
        expected = len(names)
        data_lines = nonblank
    ok = nfields[data_lines] == expected
    good, bad = data_lines[ok], data_lines[~ok]
    keep = np.zeros(len(starts), dtype=bool)
    keep[good] = True
    if head_i >= 0:
        keep[head_i] = True
    if keep.all():
        body = data
    else:
        spans = np.diff(np.concatenate((starts, [len(buf)])))
        body = buf[np.repeat(keep, spans)].tobytes()
        if not body.endswith(b"\n"):
            body += b"\n"
    if len(good):
        table = _arrow_csv(path, body, sep, names, string_columns, None)
        frame = table.to_pandas()
        if len(frame) != len(good):
            raise DataValidationError(
                f"{path.name}: could not split the file into one record per line "
                f"({len(frame)} records for {len(good)} lines)",
                hint="quoted fields that contain the delimiter or line breaks are not supported",
            )
    else:
        cols = names if names is not None else _split_header(_first_line(data), sep)
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    return _Text(
        frame,
        (good + 1).astype(np.int64),
        (bad + 1).astype(np.int64),
        [data[starts[i] : ends[i]].decode("utf-8", errors="replace") for i in bad.tolist()],
        data,
    )


def _arrow_csv(
    path: Path,
    data: bytes,
    sep: str,
    names: list[str] | None,
    string_columns: list[str],
    on_invalid: Callable[[Any], str] | None,
) -> Any:
    """pyarrow CSV read; types inferred (fast), retried as all-strings when a later block
    does not fit the inferred type (garbage in a numeric column)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def read(all_strings: bool) -> Any:
        cols = names or _split_header(_first_line(data), sep)
        wanted = cols if all_strings else [c for c in string_columns if c in cols]
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names) if names else None,
            parse_options=pacsv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=True,
            ),
        )

    try:
        try:
            return read(False)
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e).lower() and "in CSV column" not in str(e):
                raise
            return read(True)
    except pa.ArrowException as e:
        raise DataValidationError(f"cannot parse {path.name} as delimited text: {e}") from e


# =========================================================================================
# timestamps
# =========================================================================================
def _check_tz(tz: str | None) -> str:
    if tz is None or str(tz).strip().upper() in ("", "UTC", "Z"):
        return "UTC"
    try:
        pd.Timestamp("2024-01-01").tz_localize(tz)
    except Exception as e:
        raise DataValidationError(
            f"unknown time zone {tz!r}",
            hint="use an IANA name such as UTC, Europe/London or America/New_York",
        ) from e
    return str(tz)


def _nat(n: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.full(n, np.datetime64("NaT", "ns")), tz="UTC")


def _localize(idx: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Naive local times in ``tz`` -> UTC. Local times inside a DST jump become NaT, and so
    do ambiguous ones (the repeated autumn hour) unless the order lets pandas infer them."""
    if idx.tz is not None:
        return idx.tz_convert("UTC")
    if tz == "UTC":
        return idx.tz_localize("UTC")
    try:
        out = idx.tz_localize(tz, ambiguous="infer", nonexistent="NaT")
    except Exception:
        out = idx.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return out.tz_convert("UTC")


def _to_datetime(values: pd.Series, fmt: str | None, tz: str) -> pd.DatetimeIndex:
    """One vectorised parse with one format; raises ValueError on mixed time zones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pd.to_datetime(values, format=fmt, errors="coerce")
    return _localize(pd.DatetimeIndex(out), tz)


def _parse_strings(s: pd.Series, tz: str, fmt: str | None) -> pd.DatetimeIndex:
    from pandas.tseries.api import guess_datetime_format

    n = len(s)
    try:
        idx = as_ns(_to_datetime(s, fmt or "ISO8601", tz))
    except (ValueError, TypeError):
        # mixed: some stamps carry an offset, some are naive
        aware = s.str.contains(_TZ_SUFFIX).fillna(False).to_numpy(dtype=bool)
        vals = _nat(n).asi8.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = pd.to_datetime(s[aware], format=fmt or "ISO8601", errors="coerce", utc=True)
        vals[aware] = as_ns(pd.DatetimeIndex(a)).asi8
        try:
            b = _to_datetime(s[~aware], fmt or "ISO8601", tz)
            vals[~aware] = as_ns(b).asi8
        except (ValueError, TypeError):
            pass
        idx = pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")
    if fmt is None:
        retry = np.flatnonzero(np.asarray(idx.isna()) & s.notna().to_numpy(dtype=bool))
        if len(retry):
            sub = s.iloc[retry]
            first = str(sub.iloc[0])
            # dotted dates (Dukascopy "05.03.2024 10:00:00.000") are day-first
            guess = guess_datetime_format(first, dayfirst=bool(_DOTTED_DATE.match(first)))
            if guess is not None:
                try:
                    got = as_ns(_to_datetime(sub, guess, tz))
                    vals = idx.asi8.copy()
                    vals[retry] = got.asi8
                    idx = pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")
                except (ValueError, TypeError):
                    pass
    return idx


def _from_epoch(values: pd.Series) -> pd.DatetimeIndex:
    """Epoch numbers -> UTC; the unit (s, ms, us, ns) of each value follows its magnitude.
    Integer ``YYYYMMDD`` values (19000101..21001231) are read as dates."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    n = len(x)
    fin = np.isfinite(x)
    if not fin.any():
        return _nat(n)
    xf = x[fin]
    if np.all(xf == np.round(xf)) and np.all((xf >= 19000101) & (xf <= 21001231)):
        s = pd.Series(np.where(fin, np.nan_to_num(x).astype(np.int64), 0).astype(str))
        idx = pd.DatetimeIndex(pd.to_datetime(s, format="%Y%m%d", errors="coerce"))
        vals = as_ns(idx).asi8.copy()
        vals[~fin] = np.iinfo(np.int64).min
        return pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")
    # unit per value: seconds up to 1e11 (year 5138), then ms, us, ns
    mag = np.abs(np.nan_to_num(x))
    scale = np.select([mag < 1e11, mag < 1e14, mag < 1e17], [10**9, 10**6, 10**3], 1)
    vals = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        if values.dtype.kind in "iu":
            vals = values.to_numpy(dtype=np.int64) * scale.astype(np.int64)
        else:
            # rounded to the microsecond: float seconds carry ~0.2 us of noise today
            us = np.round(x * (scale / 1e3))
            ok = fin & (np.abs(us) < 9.2e15)
            vals[ok] = us[ok].astype(np.int64) * 1000
    return pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")


def _parse_timestamps(
    values: pd.Series, tz: str, fmt: str | None = None
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Parse a timestamp column to a UTC ns index plus a failure text per row (None = ok)."""
    dt = values.dtype
    if isinstance(dt, pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(values).tz_convert("UTC")
    elif dt.kind == "M":
        idx = _localize(pd.DatetimeIndex(values), tz)
    elif dt.kind in "iuf" and fmt is None:
        idx = _from_epoch(values)
    elif dt.kind == "b":
        idx = _nat(len(values))
    else:
        s = values.astype("str")
        first = s.dropna().head(1)
        numeric = bool(len(first)) and bool(_NUMBER.fullmatch(str(first.iloc[0])))
        if fmt is None and numeric:
            idx = _from_epoch(pd.to_numeric(s, errors="coerce"))
        else:
            idx = _parse_strings(s, tz, fmt)
        if fmt is None:
            # a column mixing epoch numbers and date strings: parse the rest the other way
            retry = np.flatnonzero(np.asarray(idx.isna()) & s.notna().to_numpy(dtype=bool))
            if len(retry):
                sub = s.iloc[retry]
                if numeric:
                    got = _parse_strings(sub, tz, None)
                else:
                    got = _from_epoch(
                        pd.to_numeric(sub.where(sub.str.fullmatch(_NUMBER)), errors="coerce")
                    )
                vals = as_ns(idx).asi8.copy()
                vals[retry] = as_ns(got).asi8
                idx = pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")
    idx = as_ns(pd.DatetimeIndex(idx))
    suffix = f" (or it does not exist or is ambiguous in {tz})" if tz != "UTC" else ""
    return idx, _why_unparsed(idx, values, suffix)


def _why_unparsed(idx: pd.DatetimeIndex, raw: pd.Series, suffix: str = "") -> np.ndarray:
    """Failure text per row (None where ``idx`` parsed), quoting the raw value."""
    why = np.full(len(idx), None, dtype=object)
    failed = np.flatnonzero(np.asarray(idx.isna()))
    if len(failed):
        vals = raw.iloc[failed]
        missing = vals.isna().to_numpy(dtype=bool)
        texts = [
            f"cannot parse timestamp {v!r}{suffix}"
            + (" (dates must lie in 1677-2262)" if _out_of_ns_range(v) else "")
            for v in vals.astype(str)
        ]
        why[failed] = np.where(missing, "timestamp missing", np.array(texts, dtype=object))
    return why


def _out_of_ns_range(text: str) -> bool:
    """Whether ``text`` reads as a real date that nanosecond timestamps cannot hold."""
    try:
        t = pd.Timestamp(text.strip()[:19].replace(" ", "T", 1)).as_unit("s")
    except (ValueError, TypeError, OverflowError):
        m = re.match(r"\s*(\d{4})\d{4}[ T]?\d{0,6}\s*$", text)  # compact YYYYMMDD HHMMSS
        return m is not None and not (1677 < int(m.group(1)) < 2262)
    return not (pd.Timestamp.min <= t <= pd.Timestamp.max)


def _ts_issues(
    idx: pd.DatetimeIndex, why: np.ndarray, rows: np.ndarray, pair: np.ndarray
) -> pd.DataFrame:
    bad = np.flatnonzero(np.asarray(idx.isna()))
    if not len(bad):
        return empty_issues()
    return make_issues(rows[bad], pair[bad], idx[bad], "unparseable_ts", why[bad])


# =========================================================================================
# pairs and columns
# =========================================================================================
def pair_from_filename(name: str) -> str | None:
    """The one pair named in a file name (``DAT_ASCII_EURUSD_M1_2024.csv``, ``EUR_USD.json``),
    or None when it names none or several."""
    stem = Path(name).name.upper()
    tokens = [t for t in re.split(r"[^A-Z]+", stem) if t]
    cands = set(tokens)
    cands.update(a + b for a, b in pairwise(tokens) if len(a) == len(b) == 3)
    found = {p for p in PAIRS for t in cands if p in t}
    return found.pop() if len(found) == 1 else None


def _pair_or_fail(path: Path, fixed: str | None, where: str) -> str:
    if fixed is not None:
        return fixed
    guess = pair_from_filename(path.name)
    if guess is not None:
        return guess
    raise DataValidationError(
        f"{path.name}: cannot tell the pair: {where}, and the file name does not name exactly "
        f"one pair; valid pairs are: {', '.join(PAIRS)}",
        hint="pass --pair EURUSD (or name the file after its pair)",
    )


def _normalize_pair_column(values: pd.Series) -> np.ndarray:
    """Canonical names for a pair column; unknown spellings are kept (validation flags them)."""
    codes, uniques = pd.factorize(values.astype("str"), use_na_sentinel=True)
    mapped = []
    for u in uniques:
        try:
            mapped.append(normalize_pair(str(u)))
        except BqxError:
            mapped.append(str(u).strip())
    table = np.array([*mapped, ""], dtype=object)  # code -1 (missing) -> ""
    return table[codes]


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_<>]+", " ", str(name).strip().lower()).strip()


def _resolve_columns(
    path: Path, columns: list[str], mapping: Mapping[str, str] | None
) -> tuple[dict[str, str], str | None, str | None]:
    """Map canonical fields to source columns. Returns (fields, ts_format, time_column) where
    ``time_column`` is set when ``fields["ts"]`` is a date column to be joined with it."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm_name(c), c)
    fields: dict[str, str] = {}
    ts_format = None
    for key, src in (mapping or {}).items():
        k = str(key).strip().lower()
        if k not in MAPPING_KEYS:
            raise DataValidationError(
                f"unknown mapping key {key!r}; valid keys: {', '.join(MAPPING_KEYS)}",
                hint="a mapping goes canonical=source, e.g. --map ts=Date,close=Close",
            )
        if k == "ts_format":
            ts_format = str(src)
            continue
        col = src if src in columns else by_norm.get(_norm_name(src))
        if col is None:
            raise DataValidationError(
                f"{path.name}: mapped column {src!r} (for {k}) is not in the file; "
                f"columns are: {columns}"
            )
        fields[k] = col
    for k, aliases in _ALIASES.items():
        if k in fields:
            continue
        for a in aliases:
            if a in by_norm and by_norm[a] not in fields.values():
                fields[k] = by_norm[a]
                break
    if "ts" not in fields and columns and _is_index_name(columns[0]):
        fields["ts"] = columns[0]  # a pandas index written by to_csv()/to_parquet()
    time_col = None
    if (
        "ts" not in (mapping or {})
        and _norm_name(fields.get("ts", "")) in ("date", "time")
        and "date" in by_norm
        and "time" in by_norm
    ):
        # MetaTrader-style separate Date and Time columns
        fields["ts"], time_col = by_norm["date"], by_norm["time"]
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        hint = "map them with --map, e.g. --map " + ",".join(f"{k}=<column>" for k in missing)
        if columns and re.fullmatch(r"\d{8} \d{6}", str(columns[0]).split(";")[0].strip()):
            hint = "this looks like a HistData file: use --format histdata"
        raise DataValidationError(
            f"{path.name}: cannot find a column for {', '.join(missing)}; "
            f"columns in the file: {columns}",
            hint=hint,
        )
    return fields, ts_format, time_col


_INDEX_NAMES = re.compile(r"^(|unnamed: ?0|index|level 0)$")
_DOTTED_DATE = re.compile(r"\s*\d{2}\.\d{2}\.\d{4}\b")
_COMMA_DECIMAL = re.compile(r"^\s*-?\d+,\d+\s*$")


def _is_index_name(name: str) -> bool:
    return bool(_INDEX_NAMES.match(_norm_name(name)))


def _guesses(
    fields: Mapping[str, str], mapping: Mapping[str, str] | None, time_col: str | None
) -> list[str]:
    """What the reader guessed, in words (issue 15: it says what it guessed)."""
    out = []
    for k, col in fields.items():
        if k in (mapping or {}) or col == k:
            continue
        if k == "ts" and time_col is not None:
            out.append(f"guessed ts = {col!r} + ' ' + {time_col!r} (date and time columns)")
        elif k == "ts" and _is_index_name(col):
            out.append(f"guessed ts = the unnamed first column {col!r} (a pandas index)")
        else:
            out.append(f"guessed {k} = {col!r}")
    return out


def _floats(s: pd.Series | None, n: int) -> np.ndarray:
    if s is None:
        return np.full(n, np.nan)
    if not pd.api.types.is_numeric_dtype(s):
        sample = s.dropna().head(50).astype(str)
        if len(sample) and sample.str.match(_COMMA_DECIMAL).all():
            s = s.astype(str).str.replace(",", ".", regex=False)  # "1,0856" (comma decimals)
    return np.asarray(pd.to_numeric(s, errors="coerce"), dtype="float64")


def _bars(pair: np.ndarray, ts: pd.DatetimeIndex, values: Mapping[str, np.ndarray]) -> pd.DataFrame:
    n = len(pair)
    # built like bqx.data.bars.normalize_bars builds it, so dtypes match exactly
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["pair"] = np.asarray(pair, dtype=object)
    out["ts"] = as_ns(pd.DatetimeIndex(ts))
    for c in VALUE_COLUMNS:
        v = values.get(c)
        out[c] = np.full(n, np.nan) if v is None else np.asarray(v, dtype="float64")
    return out


def _malformed_issues(text: _Text, pair: str | None, expected: str) -> pd.DataFrame:
    if not len(text.malformed_rows):
        return empty_issues()
    details = [
        f"expected {expected}; got {t[:120]!r}" if t.strip() else "blank"
        for t in text.malformed_text
    ]
    return make_issues(
        text.malformed_rows,
        np.full(len(text.malformed_rows), pair, dtype=object),
        _nat(len(text.malformed_rows)),
        "malformed_row",
        details,
    )


def _from_table(
    path: Path,
    frame: pd.DataFrame,
    rows: np.ndarray,
    fixed_pair: str | None,
    mapping: Mapping[str, str] | None,
    tz: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Generic table -> (bars, parse issues, missing fields)."""
    tzname = _check_tz(tz)
    columns = [str(c) for c in frame.columns]
    frame.columns = pd.Index(columns)
    fields, ts_format, time_col = _resolve_columns(path, columns, mapping)
    n = len(frame)
    if "pair" in fields:
        pair = _normalize_pair_column(frame[fields["pair"]])
    else:
        p = _pair_or_fail(path, fixed_pair, "the file has no pair/symbol/instrument column")
        pair = np.full(n, p, dtype=object)
    ts_col = frame[fields["ts"]]
    if time_col is not None:
        ts_col = ts_col.astype("str") + " " + frame[time_col].astype("str")
    idx, why = _parse_timestamps(ts_col, tzname, ts_format)
    values = {c: _floats(frame[fields[c]] if c in fields else None, n) for c in VALUE_COLUMNS}
    missing = [c for c in ("volume", "spread") if c not in fields]
    bars = _bars(pair, idx, values)
    guessed = _guesses(fields, mapping, time_col)
    if any(
        not pd.api.types.is_numeric_dtype(frame[fields[c]])
        and frame[fields[c]].dropna().head(50).astype(str).str.match(_COMMA_DECIMAL).all()
        for c in VALUE_COLUMNS
        if c in fields and len(frame)
    ):
        guessed.append("guessed comma decimals (1,0856 = 1.0856)")
    bars.attrs["guessed"] = guessed
    return bars, _ts_issues(idx, why, rows, pair), missing


# =========================================================================================
# readers
# =========================================================================================
def _read_csv(
    path: Path, fixed_pair: str | None, mapping: Mapping[str, str] | None, tz: str | None
) -> SourceFrame:
    data = _load_bytes(path, "CSV")
    head = _first_line(data)
    sep = _sniff_sep(head)
    cols = _split_header(head, sep)
    # keep the timestamp column(s) as text: parsing is ours (time zones, formats, epochs)
    ts_cols = [c for c in cols if _norm_name(c) in _ALIASES["ts"]]
    if cols and _is_index_name(cols[0]):
        ts_cols.append(cols[0])
    if mapping and "ts" in mapping:
        ts_cols.append(str(mapping["ts"]))
    text = _read_text(path, data, sep=sep, names=None, string_columns=ts_cols)
    if not len(text.frame) and not len(text.malformed_rows):
        raise DataValidationError(f"{path.name} has a header but no data rows")
    pair_hint = None
    if not any(_norm_name(c) in _ALIASES["pair"] for c in cols):
        pair_hint = fixed_pair or pair_from_filename(path.name)
    malformed = _malformed_issues(text, pair_hint, f"{len(cols)} fields like the header")
    if not len(text.frame):
        bars = _bars(np.array([], dtype=object), _nat(0), {})
        _resolve_columns(path, cols, mapping)  # still report a file we could never read
        return SourceFrame(
            bars, text.rows, malformed, [], len(text.malformed_rows), _raw_lines(text.data)
        )
    bars, issues, missing = _from_table(path, text.frame, text.rows, fixed_pair, mapping, tz)
    return SourceFrame(
        bars,
        text.rows,
        combine_issues(malformed, issues),
        missing,
        len(bars) + len(text.malformed_rows),
        _raw_lines(text.data),
    )


def _raw_lines(data: bytes) -> Callable[[np.ndarray], list[str]]:
    return lambda rows: _line_texts(data, rows)


def _read_parquet(
    path: Path, fixed_pair: str | None, mapping: Mapping[str, str] | None, tz: str | None
) -> SourceFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise DataValidationError(f"cannot read {path.name} as Parquet: {e}") from e
    if not len(frame):
        raise DataValidationError(f"{path.name} has no rows")
    frame = frame.reset_index(drop=not _has_named_index(frame))
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    bars, issues, missing = _from_table(path, frame, rows, fixed_pair, mapping, tz)
    return SourceFrame(bars, rows, issues, missing)


def _has_named_index(frame: pd.DataFrame) -> bool:
    """A named index, or an unnamed DatetimeIndex (pandas ``to_parquet`` of a time series):
    kept as a column, so the timestamps are not dropped."""
    return any(n is not None for n in frame.index.names) or isinstance(
        frame.index, pd.DatetimeIndex
    )


def _read_histdata(path: Path, fixed_pair: str | None) -> SourceFrame:
    data = _load_bytes(path, "HistData")
    first = _first_line(data)
    if not re.match(r"\s*\d{8} \d{6};", first) or first.count(";") != 5:
        raise DataValidationError(
            f"{path.name} is not a HistData.com M1 ASCII file: expected lines like "
            f"'20240102 170000;1.09410;1.09420;1.09400;1.09415;0', got {first[:80]!r}",
            hint="other HistData layouts (MetaTrader, NinjaTrader, Excel, tick) are not "
            "supported; for a file with a header use --format csv",
        )
    pair = _pair_or_fail(path, fixed_pair, "HistData files have no pair column")
    names = ["ts", "open", "high", "low", "close", "volume"]
    text = _read_text(path, data, sep=";", names=names, string_columns=["ts"])
    n = len(text.frame)
    pairs = np.full(n, pair, dtype=object)
    malformed = _malformed_issues(text, pair, "6 fields 'YYYYMMDD HHMMSS;o;h;l;c;v'")
    if n:
        est = pd.to_datetime(text.frame["ts"], format="%Y%m%d %H%M%S", errors="coerce")
        idx = as_ns((pd.DatetimeIndex(est) + HISTDATA_UTC_OFFSET).tz_localize("UTC"))
        why = _why_unparsed(idx, text.frame["ts"], " (expected YYYYMMDD HHMMSS, EST)")
    else:
        idx, why = _nat(0), np.array([], dtype=object)
    values = {c: _floats(text.frame[c], n) for c in ("open", "high", "low", "close")}
    # HistData M1 volume is always 0: it carries no information, store it as missing
    bars = _bars(pairs, idx, values)
    issues = combine_issues(malformed, _ts_issues(idx, why, text.rows, pairs))
    return SourceFrame(
        bars,
        text.rows,
        issues,
        ["volume", "spread"],
        n + len(text.malformed_rows),
        _raw_lines(text.data),
    )


_DUKA_GMT = "%d.%m.%Y %H:%M:%S.%f"
_DUKA_LOCAL = "%d.%m.%Y %H:%M:%S.%f GMT%z"


def _read_dukascopy(path: Path, fixed_pair: str | None) -> SourceFrame:
    data = _load_bytes(path, "Dukascopy CSV")
    head = _first_line(data)
    sep = _sniff_sep(head)
    cols = _split_header(head, sep)
    norm = [_norm_name(c) for c in cols]
    ts_name = next((c for c, k in zip(cols, norm, strict=True) if k in _ALIASES["ts"]), None)
    if ts_name is None or not {"open", "high", "low", "close"} <= set(norm):
        raise DataValidationError(
            f"{path.name} is not a Dukascopy CSV export: expected a header like "
            f"'Gmt time,Open,High,Low,Close,Volume', got {head[:80]!r}"
        )
    local = _norm_name(ts_name) == "local time"
    pair = _pair_or_fail(path, fixed_pair, "Dukascopy exports have no pair column")
    text = _read_text(path, data, sep=sep, names=None, string_columns=[ts_name])
    if not len(text.frame) and not len(text.malformed_rows):
        raise DataValidationError(f"{path.name} has a header but no data rows")
    frame = text.frame
    frame.columns = pd.Index([_norm_name(c) for c in frame.columns])
    n = len(frame)
    pairs = np.full(n, pair, dtype=object)
    raw_ts = frame[_norm_name(ts_name)].astype("str")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(
            raw_ts, format=_DUKA_LOCAL if local else _DUKA_GMT, errors="coerce", utc=True
        )
    idx = as_ns(pd.DatetimeIndex(parsed))
    why = np.full(n, None, dtype=object)
    if n and idx.isna().any():
        # other JForex layouts (e.g. 2024.01.01 00:00:00): fall back to the generic parser
        retry = np.flatnonzero(np.asarray(idx.isna()))
        got, why_r = _parse_timestamps(raw_ts.iloc[retry].reset_index(drop=True), "UTC")
        vals = idx.asi8.copy()
        vals[retry] = got.asi8
        idx = pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC")
        why[retry] = why_r
    values = {c: _floats(frame[c], n) for c in ("open", "high", "low", "close")}
    values["volume"] = _floats(frame["volume"] if "volume" in frame.columns else None, n)
    missing = ["spread"] + ([] if "volume" in frame.columns else ["volume"])
    bars = _bars(pairs, idx, values)
    malformed = _malformed_issues(text, pair, f"{len(cols)} fields like the header")
    issues = combine_issues(malformed, _ts_issues(idx, why, text.rows, pairs))
    return SourceFrame(
        bars, text.rows, issues, missing, n + len(text.malformed_rows), _raw_lines(text.data)
    )


def _read_oanda(path: Path, fixed_pair: str | None) -> SourceFrame:
    data = _load_bytes(path, "OANDA JSON", document=True)
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataValidationError(f"{path.name} is not valid JSON: {e}") from e
    pages: list[Any]
    if isinstance(doc, dict):
        pages = [doc]
    elif isinstance(doc, list) and all(isinstance(d, dict) and "candles" in d for d in doc):
        pages = doc
    elif isinstance(doc, list) and all(isinstance(d, dict) and "time" in d for d in doc):
        pages = [{"candles": doc}]
    else:
        pages = []
    if not pages or not all(isinstance(p.get("candles"), list) for p in pages):
        raise DataValidationError(
            f"{path.name} is not an OANDA v20 candles response: expected "
            '{"instrument": ..., "candles": [...]} (or a list of those)'
        )
    candles: list[dict[str, Any]] = []
    instruments: list[str] = []
    for page in pages:
        inst = page.get("instrument")
        p = (
            normalize_pair(str(inst))
            if inst
            else _pair_or_fail(path, fixed_pair, "the response has no instrument")
        )
        cs = [c if isinstance(c, dict) else {} for c in page["candles"]]
        candles.extend(cs)
        instruments.extend([p] * len(cs))
    n = len(candles)
    if not n:
        raise DataValidationError(f"{path.name} holds no candles")
    rows = np.arange(1, n + 1, dtype=np.int64)
    pairs = np.array(instruments, dtype=object)

    def side(name: str) -> pd.DataFrame | None:
        if not any(isinstance(c.get(name), dict) for c in candles):
            return None
        recs: list[dict[str, Any]] = []
        for c in candles:
            v = c.get(name)
            recs.append(v if isinstance(v, dict) else {})
        f = pd.DataFrame(recs, columns=["o", "h", "l", "c"])
        return f.apply(pd.to_numeric, errors="coerce").astype("float64")

    mid, bid, ask = side("mid"), side("bid"), side("ask")
    if mid is None and (bid is None or ask is None):
        raise DataValidationError(
            f"{path.name}: candles have neither mid nor both bid and ask prices",
            hint="request candles with price=M or price=MBA",
        )
    both = (bid + ask) / 2.0 if bid is not None and ask is not None else None
    ohlc = mid if both is None else both if mid is None else mid.fillna(both)
    assert ohlc is not None
    values: dict[str, np.ndarray] = {
        "open": ohlc["o"].to_numpy(),
        "high": ohlc["h"].to_numpy(),
        "low": ohlc["l"].to_numpy(),
        "close": ohlc["c"].to_numpy(),
    }
    missing: list[str] = []
    if bid is not None and ask is not None:
        values["spread"] = (ask - bid).mean(axis=1, skipna=False).to_numpy()
    else:
        missing.append("spread")
    vol = pd.Series([c.get("volume") for c in candles], dtype=object)
    if vol.isna().all():
        missing.append("volume")
    values["volume"] = _floats(vol, n)

    times = pd.Series([c.get("time") for c in candles], dtype=object)
    idx, why = _parse_oanda_times(times)
    bars = _bars(pairs, idx, values)
    complete = np.array([c.get("complete", True) is not False for c in candles], dtype=bool)
    inc = np.flatnonzero(~complete)
    incomplete = make_issues(
        rows[inc],
        pairs[inc],
        idx[inc],
        "incomplete_candle",
        np.full(len(inc), "complete=false: the candle was still forming when downloaded", object),
    )
    issues = combine_issues(_ts_issues(idx, why, rows, pairs), incomplete)
    return SourceFrame(
        bars, rows, issues, missing, n, lambda r: [json.dumps(candles[i - 1]) for i in r.tolist()]
    )


def _parse_oanda_times(times: pd.Series) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """RFC 3339 (``2024-01-02T00:00:00.000000000Z``) or UNIX seconds (``"1704153600.000000000"``,
    exact to the nanosecond: integer and fraction are parsed separately)."""
    s = times.astype("str")
    unix = s.str.fullmatch(r"\d+(\.\d{1,9})?").fillna(False).to_numpy(dtype=bool)
    if not unix.any():
        return _parse_timestamps(s, "UTC")
    idx, why = (
        _parse_timestamps(s.where(~unix, None), "UTC")
        if (~unix).any()
        else (
            _nat(len(s)),
            np.full(len(s), None, dtype=object),
        )
    )
    parts = s[unix].str.split(".", n=1, expand=True)
    secs = pd.to_numeric(parts[0]).to_numpy(dtype=np.int64)
    if parts.shape[1] > 1:
        frac = parts[1].fillna("").str.ljust(9, "0").replace("", "0")
        nanos = pd.to_numeric(frac).to_numpy(dtype=np.int64)
    else:
        nanos = np.zeros(len(secs), dtype=np.int64)
    vals = idx.asi8.copy()
    vals[unix] = secs * 1_000_000_000 + nanos
    why[unix] = None
    return pd.DatetimeIndex(vals.view("M8[ns]"), tz="UTC"), why


__all__ = [
    "FORMATS",
    "SAMPLES_DIR",
    "IngestResult",
    "SourceFrame",
    "ValidationReport",
    "ingest_file",
    "pair_from_filename",
    "read_source",
    "validate_file",
]
