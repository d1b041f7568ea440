"""Captured model inputs: the selected feature values of served decisions (for drift).

One row per captured decision: ``values`` is a JSON object ``{feature: value}`` (NaN ->
null) of the version's selected features, in the order the model saw them. Rows are written
off the request path by :class:`CaptureWriter` (a daemon thread, batches) and purged after
``monitor.capture_retention_days`` by the monitoring pass.

Unlike decisions, captures are a *sample* used for statistics: when the state database is
down a failed batch is dropped and counted (:attr:`CaptureWriter.dropped`), never retried
for ever and never allowed to slow a request.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow

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
)


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
        sa.Column("values", sa.JSON),
    )
    sa.Index(f"{p}ix_captures_pair_asof", captures.c.pair, captures.c.asof_ts)
    sa.Index(f"{p}ix_captures_time", captures.c.captured_at)
    return {"captures": captures}


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
    """A capture row; non-finite values become null (JSON has no NaN)."""
    vals = {
        str(n): (float(v) if math.isfinite(float(v)) else None)
        for n, v in zip(names, values, strict=True)
    }
    return {
        "decision_id": str(decision_id),
        "captured_at": as_utc(captured_at) if captured_at is not None else utcnow(),
        "pair": pair,
        "asof_ts": as_utc(asof_ts) if asof_ts is not None else None,
        "model_version": str(model_version) if model_version is not None else None,
        "values": vals,
    }


def _wide(dicts: list[dict[str, Any]]) -> pd.DataFrame:
    """Capture value dicts -> a float frame (one column per feature, NaN where absent or
    null). Rows with the same keys in the same order (one model version's features, as
    :func:`capture_row` writes them) are converted as one block."""
    import numpy as np
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
        """Insert capture rows (from :func:`capture_row`); duplicates of an id are skipped."""
        rows = [dict(r) for r in rows]
        if not rows:
            return 0
        t = self.t.captures
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(t).on_conflict_do_nothing(index_elements=["decision_id"])
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(t).on_conflict_do_nothing(index_elements=["decision_id"])
        self._write(lambda conn: conn.execute(stmt, rows))
        return len(rows)

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
        # the JSON as text, parsed below in one call (per-row decoding by the driver/ORM
        # was the largest cost of a 28-pair monitoring pass)
        raw = sa.cast(t.c["values"], sa.Text)
        q = sa.select(t.c.decision_id, t.c.pair, t.c.asof_ts, t.c.model_version, raw)
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
            rows = conn.execute(q).all()
        meta = pd.DataFrame(
            [r[:4] for r in rows], columns=["decision_id", "pair", "asof_ts", "model_version"]
        )
        meta["asof_ts"] = pd.to_datetime(meta["asof_ts"], utc=True)
        dicts = json.loads("[" + ",".join(r[4] or "{}" for r in rows) + "]")
        return pd.concat([meta, _wide(dicts)], axis=1)

    def purge_captures(self, older_than: Any) -> int:
        """Delete captures captured before ``older_than``; returns rows deleted (retention)."""
        t = self.t.captures
        stmt = t.delete().where(t.c.captured_at < as_utc(older_than))
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))


class CaptureWriter:
    """Writes capture rows in batches on a daemon thread; the request path only enqueues.

    ``rate`` in [0, 1] samples decisions (deterministically by decision id, so a replayed
    decision is sampled the same way). A full queue or a failed batch drops rows (counted).
    """

    def __init__(
        self,
        state: CapturesMixin,
        *,
        rate: float = 1.0,
        batch: int = 500,
        max_queue: int = 100_000,
        interval_s: float = 0.5,
        linger_s: float = 0.02,
    ) -> None:
        self.state = state
        #: group commit: after a batch's first row, wait up to this long for more
        self.linger_s = max(0.0, float(linger_s))
        self.rate = float(rate)
        self.batch = batch
        self.interval_s = interval_s
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
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
        """Enqueue one row (microseconds); never blocks, never raises. A row holding
        ``names`` + raw ``values`` is turned into a capture row on the writer thread."""
        if not self.sampled(str(row["decision_id"])):
            self.sampled_out += 1
            return
        self._ensure_thread()
        try:
            self._idle.clear()
            self._q.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="bqx-capture-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._q.get(timeout=self.interval_s)
            except queue.Empty:
                self._idle.set()
                continue
            rows: list[dict[str, Any]] = []
            if first is None:
                stop = True
            else:
                rows.append(first)
            deadline = time.monotonic() + self.linger_s
            while len(rows) < self.batch and not stop:
                left = deadline - time.monotonic()
                try:
                    r = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if r is None:
                    stop = True
                    break
                rows.append(r)
            if rows:
                try:
                    rows = [capture_row(**r) if "names" in r else r for r in rows]
                    self.state.write_captures(rows)
                    self.written += len(rows)
                except Exception as e:  # a sample: drop and count, never block serving
                    self.dropped += len(rows)
                    log.warning("capture writer: dropped %d rows (%s)", len(rows), e)
            if self._q.empty():
                self._idle.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything enqueued so far is written (or dropped)."""
        return self._idle.wait(timeout) and self._q.empty()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "written": self.written,
            "dropped": self.dropped,
            "sampled_out": self.sampled_out,
            "queued": self._q.qsize(),
        }
