"""Captured model inputs: the selected feature values of served decisions (for drift).

One row per captured decision. The values are stored packed: ``packed`` holds the
version's selected features as float64 little-endian bytes (non-finite -> NaN), in the
order the model saw them, and ``feature_set`` names that order - a key into
``capture_feature_sets`` (the feature-name list, stored once). A day of 28 pairs x 70
features is 2.8M values: parsing them as JSON was the largest cost of a monitoring pass
(issue 12). Rows written before this format keep their ``values`` JSON object
``{feature: value}`` (NaN -> null) and are still read (:meth:`CapturesMixin.read_captures`
reads both). Rows are written off the request path by :class:`CaptureWriter` (a daemon
thread, batches; the
request path only appends to a deque) and purged after ``monitor.capture_retention_days`` by the monitoring
pass.

Unlike decisions, captures are a *sample* used for statistics: when the state database is
down a failed batch is dropped and counted (:attr:`CaptureWriter.dropped`), never retried
for ever and never allowed to slow a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from bqx.state._base import (
    StateBase,
    UTCDateTime,
    as_utc,
    bind_rows,
    compiled_insert,
    utcnow,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CAPTURE_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "captured_at",
    "pair",
    "asof_ts",
    "model_version",
    "values",
    "feature_set",
    "packed",
)
#: dtype of a packed capture (float64: the served values exactly, so drift is unchanged)
PACKED_DTYPE = np.dtype("<f8")


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    captures = sa.Table(
        f"{p}captures",
        md,
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("captured_at", UTCDateTime, nullable=False),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("asof_ts", UTCDateTime),
        sa.Column("model_version", sa.String(64)),
        sa.Column("values", sa.JSON),  # rows of the first format only (JSON object)
        sa.Column("feature_set", sa.String(40)),  # -> capture_feature_sets.key
        sa.Column("packed", sa.LargeBinary),  # float64 LE, one per name of the set
    )
    sa.Index(f"{p}ix_captures_pair_asof", captures.c.pair, captures.c.asof_ts)
    sa.Index(f"{p}ix_captures_time", captures.c.captured_at)
    feature_sets = sa.Table(
        f"{p}capture_feature_sets",
        md,
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("names", sa.Text, nullable=False),  # JSON list of feature names
    )
    return {"captures": captures, "capture_feature_sets": feature_sets}


def feature_set_key(names: Sequence[str]) -> str:
    """Content key of an ordered feature-name list (sha1 hex, 40 chars)."""
    return hashlib.sha1("\x1f".join(names).encode()).hexdigest()


def capture_row(
    *,
    decision_id: str,
    pair: str,
    asof_ts: Any,
    model_version: str | None,
    names: Sequence[str],
    values: Iterable[float],
    captured_at: Any = None,
) -> dict[str, Any]:
    """A capture row, packed; non-finite values become NaN (as null did in JSON)."""
    return _pack_row(
        decision_id, pair, asof_ts, model_version, tuple(str(n) for n in names), values,
        captured_at,
    )  # fmt: skip


def _pack_row(
    decision_id: str,
    pair: str,
    asof_ts: Any,
    model_version: str | None,
    names: tuple[str, ...],
    values: Iterable[float],
    captured_at: Any = None,
) -> dict[str, Any]:
    """:func:`capture_row` with ``names`` already a tuple of ``str``."""
    x = np.array(values if isinstance(values, np.ndarray) else list(values), dtype=PACKED_DTYPE)
    if x.shape != (len(names),):
        raise ValueError(f"{len(names)} names but values of shape {x.shape}")
    finite = np.isfinite(x)
    if not finite.all():
        x[~finite] = np.nan
    return {
        "decision_id": str(decision_id),
        "captured_at": as_utc(captured_at) if captured_at is not None else utcnow(),
        "pair": pair,
        "asof_ts": as_utc(asof_ts) if asof_ts is not None else None,
        "model_version": str(model_version) if model_version is not None else None,
        "feature_names": names,
        "packed": x.tobytes(),
    }


def _packed(r: Mapping[str, Any]) -> dict[str, Any]:
    """A row to insert: a :func:`capture_row` row, or one with a ``values`` mapping
    ``{feature: value}`` (packed here)."""
    if "packed" in r:
        return r  # type: ignore[return-value]  # read only below
    vals = r["values"]
    return capture_row(
        decision_id=r["decision_id"],
        pair=r["pair"],
        asof_ts=r.get("asof_ts"),
        model_version=r.get("model_version"),
        names=list(vals),
        values=[np.nan if v is None else float(v) for v in vals.values()],
        captured_at=r.get("captured_at"),
    )


def _wide(dicts: list[dict[str, Any]]) -> pd.DataFrame:
    """Capture value dicts (the JSON format) -> a float frame (one column per feature, NaN
    where absent or null). Rows with the same keys in the same order (one model version's
    features) are converted as one block."""
    import pandas as pd

    groups: dict[tuple[str, ...], list[int]] = {}
    for i, d in enumerate(dicts):
        groups.setdefault(tuple(d), []).append(i)
    parts = []
    for keys, idx in groups.items():
        block = np.array([list(dicts[i].values()) for i in idx], dtype=np.float64)
        parts.append(pd.DataFrame(block.reshape(len(idx), len(keys)), index=idx, columns=keys))
    if not parts:
        return pd.DataFrame(index=range(len(dicts)))
    out = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
    return out.astype(np.float64)


class CapturesMixin(StateBase):
    def write_captures(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert capture rows (from :func:`capture_row`, or with a ``values`` mapping);
        duplicates of an id are skipped. Stored packed, the name list once per set."""
        rows = [_packed(r) for r in rows]
        if not rows:
            return 0
        sets: dict[tuple[str, ...], str] = {}
        keys = []
        for r in rows:
            names = r["feature_names"]
            key = sets.get(names)
            if key is None:
                key = sets[names] = feature_set_key(names)
            keys.append(key)
        fsets = [{"key": k, "names": json.dumps(list(n))} for n, k in sets.items()]
        if self.dialect == "sqlite":
            # statements compiled once, values bound by SQLAlchemy's own type processors
            # (see DecisionsMixin._decision_insert_sql): the Core layers per batch cost the
            # capture writer thread more than SQLite's work for a few dozen rows
            (csql, cprocs), (fsql, fprocs) = self._capture_insert_sql()
            cparams = bind_rows(
                ({**r, "feature_set": key} for r, key in zip(rows, keys, strict=True)), cprocs
            )
            fparams = bind_rows(fsets, fprocs)

            def _raw(conn: Any) -> None:
                conn.exec_driver_sql(fsql, fparams)
                conn.exec_driver_sql(csql, cparams)

            self._write(_raw)
            return len(rows)
        ins = [
            {k: r[k] for k in ("decision_id", "captured_at", "pair", "asof_ts",
                               "model_version", "packed")} | {"feature_set": key}
            for r, key in zip(rows, keys, strict=True)
        ]  # fmt: skip
        t, fs = self.t.captures, self.t.capture_feature_sets
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(t).on_conflict_do_nothing(index_elements=["decision_id"])
            fstmt: Any = pg_insert(fs).on_conflict_do_nothing(index_elements=["key"])
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(t).on_conflict_do_nothing(index_elements=["decision_id"])
            fstmt = sqlite_insert(fs).on_conflict_do_nothing(index_elements=["key"])

        def _tx(conn: Any) -> None:
            conn.execute(fstmt, fsets)
            conn.execute(stmt, ins)

        self._write(_tx)
        return len(rows)

    def _capture_insert_sql(
        self,
    ) -> tuple[tuple[str, list[tuple[str, Any]]], tuple[str, list[tuple[str, Any]]]]:
        """SQLite insert-if-absent of a capture row and of a feature set, compiled once."""
        hit = self.__dict__.get("_cap_insert_sql")
        if hit is None:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            t, fs = self.t.captures, self.t.capture_feature_sets
            stmt = sqlite_insert(t).on_conflict_do_nothing(index_elements=["decision_id"])
            fstmt = sqlite_insert(fs).on_conflict_do_nothing(index_elements=["key"])
            # "values" (the first format's JSON) is left out: NULL, as in the Core insert
            cols = [c for c in CAPTURE_COLUMNS if c != "values"]
            hit = (compiled_insert(self, stmt, t, cols), compiled_insert(self, fstmt, fs))
            self.__dict__["_cap_insert_sql"] = hit
        return hit

    def read_captures(
        self,
        pair: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        *,
        model_version: str | None = None,
    ) -> pd.DataFrame:
        """Captures with ``start <= asof_ts <= end`` as a wide frame: one column per feature
        (float, NaN for missing) plus ``decision_id``, ``pair``, ``asof_ts``,
        ``model_version``, sorted by ``asof_ts``."""
        import pandas as pd

        t = self.t.captures
        # raw columns, converted below in bulk: per-row decoding by the driver/ORM (JSON,
        # the timestamp type) was the largest cost of a 28-pair monitoring pass
        rows, names = self._capture_rows(
            [
                t.c.decision_id,
                t.c.pair,
                sa.type_coerce(t.c.asof_ts, sa.String),
                t.c.model_version,
                t.c.feature_set,
                t.c.packed,
                sa.cast(t.c["values"], sa.Text),
            ],
            4,
            pair=pair,
            start=start,
            end=end,
            model_version=model_version,
        )
        cols = list(zip(*rows, strict=True)) if rows else [()] * 7
        meta = pd.DataFrame(
            {
                "decision_id": list(cols[0]),
                "pair": list(cols[1]),
                "asof_ts": pd.DatetimeIndex(
                    pd.to_datetime(list(cols[2]), utc=True, format="ISO8601")
                ).as_unit("ns"),
                "model_version": list(cols[3]),
            },
            columns=["decision_id", "pair", "asof_ts", "model_version"],
        )
        return pd.concat([meta, _values_frame(cols[4], cols[5], cols[6], names)], axis=1)

    def read_capture_column(self, column: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """One captured column of every pair: ``pair``, ``asof_ts``, ``value`` for the
        captures with ``start <= asof_ts <= end`` that hold it (sorted by ``asof_ts``).

        For the relative-volatility column of a one-pair drift pass (the other pairs'
        rvol_60): only that column of each packed row is decoded, where
        :meth:`read_captures` builds every column of every row (~0.5 s for 28 pairs x one
        day of 70 features, ~0.1 s here)."""
        import pandas as pd

        t = self.t.captures
        rows, names = self._capture_rows(
            [
                t.c.pair,
                sa.type_coerce(t.c.asof_ts, sa.String),
                t.c.feature_set,
                t.c.packed,
                sa.cast(t.c["values"], sa.Text),
            ],
            2,
            start=start,
            end=end,
        )
        value = np.full(len(rows), np.nan)
        by_set: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            if r[2] is not None and r[3] is not None and r[2] in names:
                by_set.setdefault(r[2], []).append(i)
            elif r[4]:  # the first (JSON) format
                v = json.loads(r[4]).get(column)
                value[i] = np.nan if v is None else float(v)
        for k, idx in by_set.items():
            cols = names[k]
            if column not in cols:
                continue
            block = np.frombuffer(b"".join(rows[i][3] for i in idx), dtype=PACKED_DTYPE)
            value[idx] = block.reshape(len(idx), len(cols))[:, cols.index(column)]
        keep = np.isfinite(value)
        return pd.DataFrame(
            {
                "pair": [r[0] for r, k in zip(rows, keep, strict=True) if k],
                "asof_ts": pd.DatetimeIndex(
                    pd.to_datetime(
                        [r[1] for r, k in zip(rows, keep, strict=True) if k],
                        utc=True,
                        format="ISO8601",
                    )
                ).as_unit("ns"),
                "value": value[keep],
            }
        )

    def _capture_rows(
        self,
        columns: list[Any],
        set_pos: int,
        *,
        pair: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        model_version: str | None = None,
    ) -> tuple[list[Any], dict[str, list[str]]]:
        """The raw capture rows (``columns``, ordered by ``asof_ts``, ``decision_id``) of the
        window and the feature names of the feature sets they use (``set_pos``: where the
        feature-set key is in a row), in one read transaction."""
        t = self.t.captures
        q = sa.select(*columns)
        if pair is not None:
            q = q.where(t.c.pair.in_([pair] if isinstance(pair, str) else list(pair)))
        if start is not None:
            q = q.where(t.c.asof_ts >= as_utc(start))
        if end is not None:
            q = q.where(t.c.asof_ts <= as_utc(end))
        if model_version is not None:
            q = q.where(t.c.model_version == str(model_version))
        q = q.order_by(t.c.asof_ts, t.c.decision_id)
        with self._read() as conn:
            rows = list(conn.execute(q).all())
            keys = sorted({r[set_pos] for r in rows if r[set_pos] is not None})
            fs = self.t.capture_feature_sets
            names = (
                {
                    k: json.loads(v)
                    for k, v in conn.execute(
                        sa.select(fs.c.key, fs.c.names).where(fs.c.key.in_(keys))
                    ).all()
                }
                if keys
                else {}
            )
        return rows, names

    def purge_captures(self, older_than: Any) -> int:
        """Delete captures captured before ``older_than``; returns rows deleted (retention)."""
        t = self.t.captures
        stmt = t.delete().where(t.c.captured_at < as_utc(older_than))
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))


class CaptureWriter:
    """Writes capture rows in batches on a daemon thread; the request path only appends.

    The hand-off is a ``collections.deque`` append: no lock, no condition variable, so a
    request never wakes the writer thread. The writer wakes by itself every
    ``interval_s``, takes everything queued and writes it in batches of ``batch`` rows (one
    transaction each). Waking the writer per request (a ``queue.Queue`` put) made it
    compete with the request thread for the GIL once per request, which on a loaded host
    delayed requests by more than the write itself costs (issue 12); now it competes
    ``1 / interval_s`` times a second, whatever the request rate. A row is written at most
    ~``interval_s`` after its request (captures are a sample: a crash loses at most that).

    ``rate`` in [0, 1] samples decisions (deterministically by decision id, so a replayed
    decision is sampled the same way). A full queue (``max_queue`` rows) or a failed batch
    drops rows (counted).
    """

    def __init__(
        self,
        state: CapturesMixin,
        *,
        rate: float = 1.0,
        batch: int = 500,
        max_queue: int = 100_000,
        interval_s: float = 0.1,
    ) -> None:
        self.state = state
        self.rate = float(rate)
        self.batch = batch
        self.max_queue = max_queue
        self.interval_s = interval_s
        #: rows; a ``threading.Event`` marks a flush point, ``None`` asks the writer to stop
        self._dq: deque[Any] = deque()
        self._wake = threading.Event()  # flush/close only: requests never set it
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self.sampled_out = 0

    def sampled(self, decision_id: str) -> bool:
        """Whether this decision is captured at ``rate`` (hash of the id, stable)."""
        if self.rate >= 1.0:
            return True
        if self.rate <= 0.0:
            return False
        return (int(decision_id.replace("-", "")[-8:], 16) / 0xFFFFFFFF) < self.rate

    def submit(self, row: dict[str, Any]) -> None:
        """Enqueue one row (a deque append); never blocks, never raises. A row holding
        ``names`` + raw ``values`` is turned into a capture row on the writer thread."""
        if not self.sampled(str(row["decision_id"])):
            self.sampled_out += 1
            return
        self.submit_sampled(row)

    def submit_sampled(self, row: dict[str, Any]) -> None:
        """:meth:`submit` for a row already known to be sampled."""
        t = self._thread
        if t is None or not t.is_alive():
            self._ensure_thread()
        if len(self._dq) >= self.max_queue:
            self.dropped += 1
            return
        self._dq.append(row)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="bqx-capture-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if not self._drain():
                return

    def _drain(self) -> bool:
        """Write everything queued (in batches); False when a stop was queued."""
        rows: list[dict[str, Any]] = []
        while True:
            try:
                x = self._dq.popleft()
            except IndexError:
                break
            if x is None or isinstance(x, threading.Event):
                self._write(rows)
                rows = []
                if x is None:
                    return False
                x.set()  # a flush point: everything before it is written
                continue
            rows.append(x)
            if len(rows) >= self.batch:
                self._write(rows)
                rows = []
        self._write(rows)
        return True

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            rows = _pack_rows(rows)
            self.state.write_captures(rows)
            self.written += len(rows)
        except Exception as e:  # a sample: drop and count, never block serving
            self.dropped += len(rows)
            log.warning("capture writer: dropped %d rows (%s)", len(rows), e)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything enqueued so far is written (or dropped)."""
        if not self._dq and (self._thread is None or not self._thread.is_alive()):
            return True
        done = threading.Event()
        self._ensure_thread()
        self._dq.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._dq.append(None)
            self._wake.set()
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "written": self.written,
            "dropped": self.dropped,
            "sampled_out": self.sampled_out,
            "queued": len(self._dq),
        }


def _pack_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows holding ``names`` + raw ``values`` -> capture rows (others as they are). The
    service hands the same name list object for every row of a model version: it is turned
    into a tuple of ``str`` once per batch, not once per row."""
    tuples: dict[int, tuple[Any, tuple[str, ...]]] = {}
    out = []
    for r in rows:
        if "names" not in r:
            out.append(r)
            continue
        n = r["names"]
        hit = tuples.get(id(n))
        if hit is None or hit[0] is not n:
            hit = tuples[id(n)] = (n, tuple(str(x) for x in n))
        out.append(
            _pack_row(
                r["decision_id"], r["pair"], r.get("asof_ts"), r.get("model_version"), hit[1],
                r["values"], r.get("captured_at"),
            )
        )  # fmt: skip
    return out


def _values_frame(
    sets: Sequence[str | None],
    packed: Sequence[bytes | None],
    legacy: Sequence[str | None],
    names: Mapping[str, list[str]],
) -> pd.DataFrame:
    """The feature columns of read capture rows: packed rows one block per feature set
    (``np.frombuffer`` of the joined bytes), JSON rows (the first format) through
    :func:`_wide`; NaN where a row lacks a column."""
    import pandas as pd

    n = len(sets)
    groups: dict[str, list[int]] = {}
    old: list[int] = []
    for i, (k, b) in enumerate(zip(sets, packed, strict=True)):
        if k is not None and b is not None and k in names:
            groups.setdefault(k, []).append(i)
        else:
            old.append(i)
    parts = []
    for k, idx in groups.items():
        cols = names[k]
        block = np.frombuffer(b"".join(packed[i] or b"" for i in idx), dtype=PACKED_DTYPE)
        block = block.reshape(len(idx), len(cols)).astype(np.float64)  # native, writable
        parts.append(pd.DataFrame(block, index=idx if len(idx) < n else None, columns=cols))
    if old:
        w = _wide(json.loads("[" + ",".join(legacy[i] or "{}" for i in old) + "]"))
        w.index = pd.Index(old)
        parts.append(w)
    if not parts:
        return pd.DataFrame(index=range(n))
    out = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
    return out.astype(np.float64)
