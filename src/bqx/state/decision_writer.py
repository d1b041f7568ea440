"""The background decision-log writer: no decision answered 200 is ever lost.

The request path pays a queue put (microseconds); a daemon thread writes batches. When the
state database fails (outage, restart, network cut) the writer does not drop anything:

1. **Memory**: failed batches are kept, oldest first, up to ``max_memory`` rows.
2. **Spill file**: beyond that bound rows are appended to a local file of this worker
   (``<spill_dir>/decisions-<host>-<pid>-<id>.jsonl``, one JSON row per line, ``fsync``'d
   after every append, ``flock``'ed for the life of the writer).
3. **Replay**: a reconnect attempt is due after a bounded exponential backoff
   (0.2 s doubling to ``retry_max_s``); when the database answers, spill files left by dead
   processes, then memory, then this worker's spill file are written in order, in batches,
   with insert-if-absent on ``decision_id`` (idempotent: a batch whose commit outcome was
   unknown, or a spill file half replayed before a crash, is written again harmlessly).
4. **Shutdown / crash**: :meth:`close` moves what memory still holds to the spill file when
   the database is still down; a file whose owner died (``kill -9``) is adopted and replayed
   by the next writer that starts in the same ``spill_dir`` (its ``flock`` is free).
5. **Disk full**: if the spill file cannot be written the rows stay in memory (beyond the
   bound: memory grows rather than anything being dropped), :attr:`spill_ok` turns False,
   a CRITICAL log line is written and ``on_critical`` is called; the service reports not
   ready until a write succeeds again.

Durability window: rows held in memory (at most ``max_memory``) and rows still in the queue
die with a ``kill -9``; set ``max_memory=0`` to send every failed batch straight to the
fsync'd file (then only the queue -- a few milliseconds of requests, at most ``linger_s``
plus one batch write -- is at risk).

Rows that the database *rejects* (not an outage: :func:`bqx.infra.outage.is_transient` is
False) are retried one by one; a row that still fails is logged at ERROR with its id and
counted in :attr:`failed` (``on_error`` is called) -- holding it would block the log forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bqx.state._base import StateError

if TYPE_CHECKING:
    from bqx.state.decisions import DecisionsMixin

log = logging.getLogger(__name__)

SPILL_GLOB = "decisions-*.jsonl"


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


class _SpillFile:
    """An append-only, fsync'd, flock'ed JSON-lines file."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise
        self.rows = self._count()

    def _count(self) -> int:
        n = 0
        for _ in self.read():
            n += 1
        return n

    def append(self, rows: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, default=_default) + "\n" for r in rows).encode()
        view = memoryview(data)
        while view:
            k = os.write(self.fd, view)
            view = view[k:]
        os.fsync(self.fd)
        self.rows += len(rows)

    def read(self) -> Iterator[dict[str, Any]]:
        """Rows in file order; a torn last line (crash mid-write) is skipped."""
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    log.warning("decision spill %s: skipping a torn last line", self.path)
                    break
                try:
                    yield json.loads(line)
                except ValueError:
                    log.warning("decision spill %s: skipping an unreadable line", self.path)

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)
        os.fsync(self.fd)
        self.rows = 0

    def close(self, *, delete: bool) -> None:
        if delete:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # releases the flock


class DecisionLogWriter:
    """Appends decisions off the request path; buffers, spills and replays across outages.

    ``submit(row)`` is a queue put (microseconds). A daemon thread writes batches of up to
    ``max_batch`` rows per transaction (insert-if-absent by ``decision_id``), waiting up to
    ``linger_s`` after a batch's first row for more (group commit). See the module
    docstring for what happens when the database is down. ``spill_dir=None`` keeps failed
    rows in memory only (no bound: nothing is dropped, but nothing survives the process).

    Nothing is dropped on back-pressure either: when the queue is full for
    ``put_timeout_s`` the caller writes its row synchronously.

    Create it in the worker process that uses it (e.g. in the FastAPI lifespan): threads
    do not survive ``fork()``. Call :meth:`close` at shutdown to drain the queue.
    """

    _STOP = object()

    def __init__(
        self,
        state: DecisionsMixin,
        *,
        max_batch: int = 500,
        max_queue: int = 50_000,
        put_timeout_s: float = 1.0,
        retries: int = 3,
        on_error: Callable[[BaseException, int], None] | None = None,
        spill_dir: str | Path | None = None,
        max_memory: int = 1_000,
        retry_max_s: float = 2.0,
        on_critical: Callable[[BaseException], None] | None = None,
        linger_s: float = 0.01,
    ) -> None:
        from bqx.infra.retry import Breaker

        self.state = state
        self.max_batch = max_batch
        #: group commit: after the first row of a batch, wait up to this long for more
        #: (a flush or close ends the wait at once). One SQLite commit per row costs ~1-2 ms
        #: of the worker's CPU; under load a batch of a few rows costs little more.
        self.linger_s = max(0.0, float(linger_s))
        self.put_timeout_s = put_timeout_s
        self.retries = retries
        self.on_error = on_error
        self.on_critical = on_critical
        self.max_memory = max(0, int(max_memory))
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.breaker = Breaker("decision_log", base_s=0.2, max_s=retry_max_s)
        self.written = 0
        self.failed = 0
        self.replayed = 0
        self.spill_ok = True
        self._mem: deque[dict[str, Any]] = deque()
        self._spill: _SpillFile | None = None
        self._orphans: list[_SpillFile] = []
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        #: ends a group-commit wait early (flush, close, a full batch queued); rows alone do
        #: not wake the writer, so it wakes once per batch rather than once per row
        self._wake = threading.Event()
        self._lingering = 0  # rows of the batch the writer holds while it lingers
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._start_lock = threading.Lock()
        self._closed = False
        if self.spill_dir is not None:
            self._adopt_orphans()
            if self.held:
                self._ensure_thread()  # replay what dead processes left, right away

    # -- public ----------------------------------------------------------------------------
    def submit(self, row: Mapping[str, Any]) -> str:
        """Queue one decision; returns its id (generated if absent). Validates at once,
        so a bad row fails in the caller, not later on the thread."""
        from bqx.state.decisions import _prepare_decision

        if self._closed:
            raise StateError("decision log writer is closed")
        prepared = _prepare_decision(row)
        self._ensure_thread()
        try:
            self._q.put(prepared, timeout=self.put_timeout_s)
        except queue.Full:
            self.state.log_decisions([prepared], if_absent=True)
            self.written += 1
        else:
            if self._lingering and self._q.qsize() + self._lingering >= self.max_batch:
                self._wake.set()  # a full batch is waiting: end the group-commit wait
        return str(prepared["decision_id"])

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every row submitted before this call is written *or held* (in
        memory or the spill file); see :meth:`wait_written` to wait for the database."""
        if self._thread is None or not self._thread.is_alive():
            return self._q.empty()
        done = threading.Event()
        self._q.put(done)
        self._wake.set()
        return done.wait(timeout)

    def wait_written(self, timeout: float = 30.0) -> bool:
        """Block until the queue is empty and nothing is held (all in the database)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.flush(max(0.01, end - time.monotonic())) and not self.held:
                return True
            time.sleep(0.05)
        return False

    def close(self, timeout: float | None = 10.0) -> None:
        """Drain the queue, try the database once more, spill what is still held, stop."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._q.put(self._STOP)
            self._wake.set()
            self._thread.join(timeout)
        else:
            self._shutdown()

    @property
    def pending(self) -> int:
        """Rows in the queue (not yet seen by the thread)."""
        return self._q.qsize()

    @property
    def held_memory(self) -> int:
        return len(self._mem)

    @property
    def held_spill(self) -> int:
        n = sum(f.rows for f in self._orphans)
        return n + (self._spill.rows if self._spill is not None else 0)

    @property
    def held(self) -> int:
        """Rows answered but not yet in the database (memory + spill files)."""
        return self.held_memory + self.held_spill

    def status(self) -> dict[str, Any]:
        """For ``/readyz`` and ``/metrics``: what the writer holds and whether it is sound."""
        return {
            "database_ok": self.breaker.healthy,
            "spill_ok": self.spill_ok,
            "queued": self.pending,
            "held_memory": self.held_memory,
            "held_spill": self.held_spill,
            "written": self.written,
            "replayed": self.replayed,
            "failed": self.failed,
            "last_error": self.breaker.last_error,
        }

    # -- thread ----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="bqx-decision-log", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            wait = None
            if self.held:
                wait = max(0.02, min(0.5, self.breaker.seconds_until_due()))
            # cleared before anything is taken: a flush/close that set it earlier put its
            # marker before, so the marker is taken below before any wait
            self._wake.clear()
            try:
                item = self._q.get(timeout=wait)
            except queue.Empty:
                item = None
            batch: list[dict[str, Any]] = []
            markers: list[threading.Event] = []
            stop = False
            waited = False
            deadline = time.monotonic() + self.linger_s
            while item is not None:
                if item is self._STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= self.max_batch:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    item = None
                    left = deadline - time.monotonic()
                    if not waited and left > 0 and batch and not markers and not self.held:
                        # group commit: sleep out the linger once (a flush, close or full
                        # batch ends it early), then take what arrived meanwhile. Waiting
                        # on the queue instead woke this thread (and took the GIL) for
                        # every row submitted during the linger.
                        waited = True
                        self._lingering = len(batch)
                        self._wake.wait(left)
                        self._lingering = 0
                        try:
                            item = self._q.get_nowait()
                        except queue.Empty:
                            item = None
            try:
                if batch:
                    self._handle(batch)
                if self.held and self.breaker.due():
                    self._drain()
            except Exception:  # pragma: no cover - the thread must survive anything
                log.exception("decision log writer: unexpected error")
            for m in markers:
                m.set()
            if stop:
                self._shutdown()
                return

    def _handle(self, batch: list[dict[str, Any]]) -> None:
        if self.held:  # keep the order: behind what is already waiting
            self._hold(batch)
            return
        err = self._write(batch, attempts=1 + min(self.retries, 1))
        if err is not None:
            self._hold(batch)

    def _write(self, rows: list[dict[str, Any]], attempts: int = 1) -> BaseException | None:
        """Write ``rows``; None on success, the transient error on an outage. Rows the
        database rejects for other reasons are dropped loudly (counted in ``failed``)."""
        from bqx.infra.outage import is_transient

        for attempt in range(attempts):
            try:
                self.state.log_decisions(rows, if_absent=True)
                self.written += len(rows)
                if not self.breaker.healthy:
                    log.warning("decision log: the state database is back")
                self.breaker.ok()
                return None
            except Exception as e:
                if is_transient(e):
                    if attempt + 1 < attempts:
                        time.sleep(0.05 * 2**attempt)
                        continue
                    if self.breaker.healthy:
                        log.error(
                            "decision log: the state database failed (%s); holding decisions "
                            "(memory up to %d rows, then %s)",
                            e,
                            self.max_memory,
                            self.spill_dir or "memory only",
                        )
                    self.breaker.failed(e)
                    return e
                self._reject(rows, e)
                return None
        return None  # pragma: no cover

    def _reject(self, rows: list[dict[str, Any]], e: BaseException) -> None:
        """A non-outage failure: try rows one by one, drop (loudly) the ones that fail."""
        bad = rows
        if len(rows) > 1:
            bad = []
            for r in rows:
                try:
                    self.state.log_decisions([r], if_absent=True)
                    self.written += 1
                except Exception:
                    bad.append(r)
        if not bad:
            return
        self.failed += len(bad)
        log.error(
            "decision log: %d decisions could not be written (%s); ids: %s",
            len(bad),
            e,
            ",".join(str(r["decision_id"]) for r in bad),
        )
        if self.on_error is not None:
            try:
                self.on_error(e, len(bad))
            except Exception:  # pragma: no cover - a hook must not kill the thread
                log.exception("decision log on_error hook failed")

    # -- holding ---------------------------------------------------------------------------
    def _hold(self, rows: list[dict[str, Any]]) -> None:
        spill_has = self._spill is not None and self._spill.rows > 0
        if self.spill_dir is None or (
            not spill_has and len(self._mem) + len(rows) <= self.max_memory
        ):
            self._mem.extend(rows)
            return
        try:
            self._spill_file().append(rows)
            if not self.spill_ok:
                log.warning("decision log: the spill file is writable again")
            self.spill_ok = True
        except OSError as e:
            self._mem.extend(rows)  # never drop: memory grows instead
            if self.spill_ok:
                log.critical(
                    "decision log: cannot write the spill file in %s (%s): %d decisions are "
                    "held in memory only and will be lost if the process dies",
                    self.spill_dir,
                    e,
                    len(self._mem),
                )
                if self.on_critical is not None:
                    with contextlib.suppress(Exception):
                        self.on_critical(e)
            self.spill_ok = False

    def _spill_file(self) -> _SpillFile:
        if self._spill is None:
            assert self.spill_dir is not None
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            name = f"decisions-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._spill = _SpillFile(self.spill_dir / name, create=True)
        return self._spill

    def _adopt_orphans(self) -> None:
        """Take over spill files whose writer is gone (their flock is free)."""
        assert self.spill_dir is not None
        if not self.spill_dir.is_dir():
            return
        mine = {f.path for f in self._orphans}
        if self._spill is not None:
            mine.add(self._spill.path)
        for p in sorted(self.spill_dir.glob(SPILL_GLOB), key=lambda q: q.stat().st_mtime):
            if p in mine:
                continue
            try:
                f = _SpillFile(p, create=False)
            except OSError:
                continue  # a live writer owns it (or it vanished)
            if f.rows:
                log.warning("decision log: adopting %d decisions spilled in %s", f.rows, p.name)
            self._orphans.append(f)

    def _drain(self) -> None:
        """Write what is held, oldest first: orphan files, memory, this worker's file."""
        if self.spill_dir is not None:
            self._adopt_orphans()
        while self._orphans:
            f = self._orphans[0]
            if not self._replay_file(f):
                return
            f.close(delete=True)
            self._orphans.pop(0)
        while self._mem:
            chunk = [self._mem[i] for i in range(min(self.max_batch, len(self._mem)))]
            if self._write(chunk) is not None:
                return
            for _ in chunk:
                self._mem.popleft()
            self.replayed += len(chunk)
        if not self.spill_ok and not self._mem:
            log.warning("decision log: the rows held in memory are written; none at risk")
            self.spill_ok = True  # nothing depends on the unwritable spill file any more
        if self._spill is not None and self._spill.rows and self._replay_file(self._spill):
            self._spill.clear()

    def _replay_file(self, f: _SpillFile) -> bool:
        chunk: list[dict[str, Any]] = []
        for row in f.read():
            chunk.append(row)
            if len(chunk) >= self.max_batch:
                if self._write(chunk) is not None:
                    return False
                self.replayed += len(chunk)
                chunk = []
        if chunk:
            if self._write(chunk) is not None:
                return False
            self.replayed += len(chunk)
        log.info("decision log: replayed %s", f.path.name)
        return True

    def _shutdown(self) -> None:
        """Last attempt to write; what is still held goes to the spill file."""
        if self.held:
            with contextlib.suppress(Exception):
                self._drain()
        if self._mem and self.spill_dir is not None:
            rows = list(self._mem)
            try:
                self._spill_file().append(rows)
                self._mem.clear()
                log.warning(
                    "decision log: %d decisions spilled to %s at shutdown; the next start "
                    "replays them",
                    len(rows),
                    self._spill.path if self._spill else self.spill_dir,
                )
            except OSError as e:
                log.critical("decision log: %d decisions lost at shutdown: %s", len(rows), e)
        elif self._mem:
            log.critical(
                "decision log: %d decisions lost at shutdown (no spill directory)",
                len(self._mem),
            )
        for f in self._orphans:
            f.close(delete=f.rows == 0)
        self._orphans = []
        if self._spill is not None:
            self._spill.close(delete=self._spill.rows == 0)
            self._spill = None
