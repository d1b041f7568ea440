"""Transactional state: API keys, the decision log, promotion history and alerts.

Why a separate database from the bar store: DuckDB allows one writing process per file,
while these small tables are written concurrently by every API worker, the CLI
(``bqx keys``, ``bqx models promote``) and monitoring jobs. They live in a store built
for concurrent writers: SQLite in WAL mode by default (``sqlite:///<home>/state.db``),
PostgreSQL in production (``postgresql://...``, driven by psycopg 3).

Concurrency design (SQLite):

* WAL mode: readers never block the writer and the writer never blocks readers.
* Every write transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up
  front, so the ``busy_timeout`` handler waits for it. A deferred ``BEGIN`` that reads and
  then writes can instead fail at once with "database is locked" (SQLITE_BUSY_SNAPSHOT),
  which no timeout cures. Reads use a plain deferred ``BEGIN``.
* ``busy_timeout`` (default 10 s) plus a short retry loop for the rare lock error that
  still escapes (e.g. while another process switches a fresh file to WAL).
* ``synchronous=NORMAL``: durable across application crashes; a power loss may lose the
  last few committed transactions but never corrupts the file (the SQLite default advice
  for WAL).
* Busy waits on SQLite sleep in steps of up to 100 ms, which is far above the API's 20 ms
  p99 budget: the request path should not write synchronously. Use
  :class:`DecisionLogWriter`, which batches decisions on a background thread.

One engine per process: :attr:`StateDB.engine` notices a ``fork()`` (pid change) and
replaces the inherited pool without closing the parent's connections (sharing a SQLite or
PostgreSQL connection across processes corrupts it).

Timestamps: tz-aware UTC everywhere. Input may be a ``datetime``/``pd.Timestamp``/ISO
string; naive values are taken as UTC (the project convention, see
:func:`bqx.calendar.to_utc`). Output is tz-aware UTC (``datetime`` for scalars,
``datetime64[ns, UTC]`` columns in DataFrames). SQLite stores naive UTC text in a fixed,
lexicographically sortable format; PostgreSQL stores ``timestamptz``.
"""

from __future__ import annotations

import getpass
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from bqx.errors import BqxError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from bqx.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

ROLES: tuple[str, ...] = ("reader", "trader", "admin")
PROMOTION_ACTIONS: tuple[str, ...] = ("promote", "rollback", "approve", "reject")
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

#: Columns of the decision log, in the order :meth:`StateDB.read_decisions` returns them.
DECISION_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "request_time",
    "pair",
    "asof_ts",
    "horizon",
    "prediction",
    "interval_lo",
    "interval_hi",
    "confidence_level",
    "signal",
    "signal_strength",
    "signal_reason",
    "model_name",
    "model_version",
    "latency_ms",
    "feature_hash",
    "key_id",
    "realized_target",
    "realized_at",
    "extra",
)


class StateError(BqxError):
    """The state database cannot be reached or rejected an operation."""


# ---------------------------------------------------------------------------------------
# time helpers
# ---------------------------------------------------------------------------------------
def utcnow() -> datetime:
    """Now, tz-aware UTC (microsecond resolution: what both backends store)."""
    return datetime.now(UTC)


def as_utc(value: Any) -> datetime:
    """Coerce a timestamp to a tz-aware UTC ``datetime`` (naive input is taken as UTC).

    Fast path for ``datetime`` (this runs for every bound timestamp on the request path);
    ``pd.Timestamp``, ``numpy.datetime64`` and ISO strings are accepted too.
    """
    if isinstance(value, datetime):
        if hasattr(value, "to_pydatetime"):  # pd.Timestamp: drop nanoseconds explicitly
            value = value.to_pydatetime()
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        try:
            return as_utc(datetime.fromisoformat(value.strip()))
        except ValueError as e:
            raise ValueError(f"timestamp {value!r} is not ISO 8601") from e
    import pandas as pd

    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot interpret {value!r} as a timestamp") from e
    if t is pd.NaT:
        raise ValueError("timestamp is NaT")
    return as_utc(t.to_pydatetime())


def current_actor() -> str:
    """Who is acting, for the promotion history when no API key is involved: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def new_decision_id() -> str:
    """A fresh decision id (uuid4 text). The API can return it before the row is written."""
    return str(uuid.uuid4())


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is tz-aware UTC in Python on every backend.

    SQLite has no timezone type: values are stored as naive UTC text (SQLAlchemy's fixed
    ``YYYY-MM-DD HH:MM:SS.ffffff`` format, so string order is time order and range queries
    work). PostgreSQL stores ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        v = as_utc(value)
        return v.replace(tzinfo=None) if dialect.name == "sqlite" else v

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: rows written by another tool
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tables:
    metadata: sa.MetaData
    api_keys: sa.Table
    decisions: sa.Table
    promotions: sa.Table
    alerts: sa.Table


def _build_tables(prefix: str) -> _Tables:
    """Table definitions. ``prefix`` isolates test runs sharing one PostgreSQL database."""
    md = sa.MetaData()
    p = prefix
    api_keys = sa.Table(
        f"{p}api_keys",
        md,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("role", sa.String(16), nullable=False),
        # hash of the secret (never the key itself), its per-key salt and the scheme used
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("params", sa.String(64), nullable=False),
        # requests/second; NULL = the service default (settings.serve.rate_limit)
        sa.Column("rate", sa.Float),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.CheckConstraint("role IN ('reader', 'trader', 'admin')", name=f"{p}ck_api_keys_role"),
    )
    decisions = sa.Table(
        f"{p}decisions",
        md,
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("request_time", UTCDateTime, nullable=False),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("asof_ts", UTCDateTime),
        sa.Column("horizon", sa.Integer),
        sa.Column("prediction", sa.Float),
        sa.Column("interval_lo", sa.Float),
        sa.Column("interval_hi", sa.Float),
        sa.Column("confidence_level", sa.Float),
        sa.Column("signal", sa.String(16)),
        sa.Column("signal_strength", sa.Float),
        sa.Column("signal_reason", sa.Text),
        sa.Column("model_name", sa.Text),
        sa.Column("model_version", sa.String(64)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("feature_hash", sa.Text),
        # no foreign key on purpose: the log must never reject a decision because of a key
        # problem (and `bqx predict` logs decisions without a key)
        sa.Column("key_id", sa.String(32)),
        # filled later by monitoring, when the target becomes known
        sa.Column("realized_target", sa.Float),
        sa.Column("realized_at", UTCDateTime),
        # free-form JSON for what the columns do not cover (A/B arm, request id, ...)
        sa.Column("extra", sa.JSON),
    )
    sa.Index(f"{p}ix_decisions_pair_time", decisions.c.pair, decisions.c.request_time)
    sa.Index(f"{p}ix_decisions_pair_asof", decisions.c.pair, decisions.c.asof_ts)
    promotions = sa.Table(
        f"{p}promotions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("from_version", sa.String(64)),
        sa.Column("to_version", sa.String(64)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.CheckConstraint(
            "action IN ('promote', 'rollback', 'approve', 'reject')",
            name=f"{p}ck_promotions_action",
        ),
        # ids are never reused on SQLite, so id order is history order
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_promotions_pair", promotions.c.pair, promotions.c.id)
    alerts = sa.Table(
        f"{p}alerts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("pair", sa.String(16)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("resolved_at", UTCDateTime),
        sqlite_autoincrement=True,
    )
    # at most one open alert per fingerprint, enforced by the database (de-dup across
    # processes without a race)
    sa.Index(
        f"{p}ux_alerts_open_fingerprint",
        alerts.c.fingerprint,
        unique=True,
        sqlite_where=alerts.c.resolved_at.is_(None),
        postgresql_where=alerts.c.resolved_at.is_(None),
    )
    sa.Index(f"{p}ix_alerts_at", alerts.c.at)
    return _Tables(md, api_keys, decisions, promotions, alerts)


# ---------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------
def normalize_state_url(url: str) -> str:
    """``postgresql://``/``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3); SQLite as is."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ConfigError(
        f"state_url {redact_url(url)!r} is not supported",
        hint="use sqlite:///path/state.db (default) or postgresql://user@host:5432/db",
    )


def redact_url(url: str) -> str:
    """Hide a password in a URL for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _sqlite_path(url: str) -> Path | None:
    """File path of a ``sqlite:///`` URL, ``None`` for an in-memory database."""
    rest = url[len("sqlite://") :]
    if rest in ("", "/", "/:memory:") or rest.startswith("/:memory:?"):
        return None
    return Path(rest[1:].split("?", 1)[0])


def _is_locked(e: BaseException) -> bool:
    msg = str(getattr(e, "orig", e)).lower()
    return "database is locked" in msg or "database is busy" in msg or "sqlite_busy" in msg


# ---------------------------------------------------------------------------------------
# value objects
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertResult:
    """Outcome of :meth:`StateDB.raise_alert`: the open alert's id and whether it is new."""

    id: int
    created: bool


PromotionAction = Literal["promote", "rollback", "approve", "reject"]


# ---------------------------------------------------------------------------------------
# the database
# ---------------------------------------------------------------------------------------
class StateDB:
    """The state database. Thread-safe; one engine per process (fork-safe).

    ``prefix`` prefixes every table and index name (tests sharing one PostgreSQL database
    use a unique prefix and :meth:`drop_all`).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        busy_timeout_s: float = 10.0,
        create: bool = True,
    ) -> None:
        if prefix and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
            raise ConfigError(f"table prefix {prefix!r} must be a short SQL identifier")
        self.url = normalize_state_url(url)
        self.prefix = prefix
        self.busy_timeout_s = busy_timeout_s
        self.t = _build_tables(prefix)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = -1
        if self.dialect == "sqlite":
            path = _sqlite_path(self.url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if create:
            self.create_tables()

    # -- engine -------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """This process's engine. After ``fork()`` the inherited pool is abandoned (not
        closed: the parent still uses those connections) and a new engine is made."""
        pid = os.getpid()
        if self._pid != pid or self._engine is None:
            with self._lock:
                if self._pid != pid or self._engine is None:
                    if self._engine is not None:
                        self._engine.dispose(close=False)
                    self._engine = self._make_engine()
                    self._pid = pid
        return self._engine

    def _make_engine(self) -> Engine:
        if self.dialect == "postgresql":
            return sa.create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10, "options": "-c timezone=UTC"},
            )
        memory = _sqlite_path(self.url) is None
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": self.busy_timeout_s, "check_same_thread": False},
            # an in-memory database exists per connection: share one (tests only)
            **({"poolclass": StaticPool} if memory else {}),
        )
        busy_ms = int(self.busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_con: Any, _record: Any) -> None:
            # take transaction control away from the sqlite3 module (it would emit a
            # deferred BEGIN itself); SQLAlchemy's "begin" event below emits ours
            dbapi_con.isolation_level = None
            cur = dbapi_con.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if not memory:
                    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
                    if str(mode).lower() != "wal":
                        _retry_locked(lambda: cur.execute("PRAGMA journal_mode = WAL"))
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("PRAGMA foreign_keys = ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("bqx_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def close(self) -> None:
        """Dispose of this process's connections."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateDB({redact_url(self.url)!r})"

    # -- transactions -------------------------------------------------------------------
    def _write(self, fn: Callable[[Connection], T], *, attempts: int = 5) -> T:
        """Run ``fn`` in one write transaction (``BEGIN IMMEDIATE`` on SQLite), retrying
        the whole transaction on a lock error. ``fn`` must only touch the database."""
        for attempt in range(attempts):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(bqx_write=True)
                    with conn.begin():
                        return fn(conn)
            except OperationalError as e:
                if _is_locked(e) and attempt < attempts - 1:
                    time.sleep(0.01 * 2**attempt)
                    continue
                raise self._wrap(e) from e
            except IntegrityError:
                raise
            except DBAPIError as e:
                raise self._wrap(e) from e
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as e:
            raise self._wrap(e) from e

    def _wrap(self, e: DBAPIError) -> StateError:
        return StateError(
            f"state database {redact_url(self.url)}: {str(e.orig).strip().splitlines()[0]}",
            hint="check BQX_STATE_URL (default sqlite:///<home>/state.db) and that the "
            "server/file is reachable",
        )

    # -- schema -------------------------------------------------------------------------
    def create_tables(self) -> None:
        """Create missing tables and indexes (idempotent, safe when processes race)."""

        def _create(conn: Connection) -> None:
            if self.dialect == "postgresql":
                # serialise concurrent CREATE TABLE IF NOT EXISTS across processes
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x627178_5354)))
            self.t.metadata.create_all(conn, checkfirst=True)

        self._write(_create)

    def drop_all(self) -> None:
        """Drop this instance's tables (tests)."""
        self._write(lambda conn: self.t.metadata.drop_all(conn, checkfirst=True))

    def ping(self) -> bool:
        """True when the database answers (for ``/readyz``)."""
        try:
            with self._read() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    # -- API keys (low level: bqx.serving.auth builds on these) -------------------------
    def insert_api_key(
        self,
        *,
        key_id: str,
        role: str,
        hash: str,
        salt: str,
        params: str,
        name: str | None = None,
        rate: float | None = None,
        created_at: Any = None,
    ) -> None:
        """Store a key's hash. Raises ``IntegrityError`` if ``key_id`` exists."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        row = {
            "key_id": key_id,
            "name": name,
            "role": role,
            "hash": hash,
            "salt": salt,
            "params": params,
            "rate": rate,
            "created_at": created_at if created_at is not None else utcnow(),
        }
        self._write(lambda conn: conn.execute(self.t.api_keys.insert(), row))

    def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        """One key row (including hash and salt) or ``None``."""
        k = self.t.api_keys
        with self._read() as conn:
            r = conn.execute(sa.select(k).where(k.c.key_id == key_id)).mappings().first()
        return dict(r) if r is not None else None

    def list_api_keys(self) -> list[dict[str, Any]]:
        """All key rows without hash/salt, oldest first."""
        k = self.t.api_keys
        cols = [c for c in k.c if c.name not in ("hash", "salt")]
        with self._read() as conn:
            rows = conn.execute(sa.select(*cols).order_by(k.c.created_at, k.c.key_id))
            return [dict(r) for r in rows.mappings()]

    def revoke_api_key(self, key_id: str, at: Any = None) -> bool:
        """Mark a key revoked. False if unknown; an already revoked key keeps its first
        revocation time (and True is returned)."""
        k = self.t.api_keys
        when = at if at is not None else utcnow()

        def _do(conn: Connection) -> bool:
            exists = conn.execute(sa.select(k.c.key_id).where(k.c.key_id == key_id)).first()
            if exists is None:
                return False
            conn.execute(
                k.update()
                .where(k.c.key_id == key_id, k.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
            return True

        return self._write(_do)

    def touch_api_keys(self, last_used: Mapping[str, Any]) -> None:
        """Record ``last_used_at`` for several keys in one transaction (called in batches,
        not per request: see ``ApiKeys.flush_last_used``)."""
        if not last_used:
            return
        k = self.t.api_keys
        stmt = (
            k.update()
            .where(k.c.key_id == sa.bindparam("b_key_id"))
            .values(last_used_at=sa.bindparam("b_at"))
        )
        params = [{"b_key_id": kid, "b_at": as_utc(at)} for kid, at in last_used.items()]
        self._write(lambda conn: conn.execute(stmt, params))

    # -- decision log -------------------------------------------------------------------
    def log_decision(
        self,
        *,
        pair: str,
        prediction: float | None,
        asof_ts: Any = None,
        horizon: int | None = None,
        interval_lo: float | None = None,
        interval_hi: float | None = None,
        confidence_level: float | None = None,
        signal: str | None = None,
        signal_strength: float | None = None,
        signal_reason: str | None = None,
        model_name: str | None = None,
        model_version: str | int | None = None,
        latency_ms: float | None = None,
        feature_hash: str | None = None,
        key_id: str | None = None,
        decision_id: str | None = None,
        request_time: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Append one decision synchronously; returns its id (generated when not given).

        On the request path prefer :class:`DecisionLogWriter` (no lock waits there).
        """
        row = {
            "decision_id": decision_id,
            "request_time": request_time,
            "pair": pair,
            "asof_ts": asof_ts,
            "horizon": horizon,
            "prediction": prediction,
            "interval_lo": interval_lo,
            "interval_hi": interval_hi,
            "confidence_level": confidence_level,
            "signal": signal,
            "signal_strength": signal_strength,
            "signal_reason": signal_reason,
            "model_name": model_name,
            "model_version": model_version,
            "latency_ms": latency_ms,
            "feature_hash": feature_hash,
            "key_id": key_id,
            "extra": dict(extra) if extra is not None else None,
        }
        return self.log_decisions([row])[0]

    def log_decisions(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Append many decisions in one transaction; returns their ids in order.

        Keys must be columns of :data:`DECISION_COLUMNS` (a typo is an error, not a silently
        dropped field). Missing ``decision_id``/``request_time`` are filled in.
        """
        prepared = [_prepare_decision(r) for r in rows]
        if prepared:
            self._write(lambda conn: conn.execute(self.t.decisions.insert(), prepared))
        return [r["decision_id"] for r in prepared]

    def read_decisions(
        self,
        pair: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        *,
        by: Literal["request_time", "asof_ts"] = "request_time",
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Decisions with ``start <= <by> <= end`` (bounds optional), sorted by ``by``.

        Columns are :data:`DECISION_COLUMNS`; time columns are ``datetime64[ns, UTC]``.
        ``limit`` keeps the most recent rows.
        """
        d = self.t.decisions
        tcol = d.c[by]
        q = sa.select(*[d.c[c] for c in DECISION_COLUMNS])
        if pair is not None:
            pairs = [pair] if isinstance(pair, str) else list(pair)
            q = q.where(d.c.pair.in_(pairs))
        if start is not None:
            q = q.where(tcol >= as_utc(start))
        if end is not None:
            q = q.where(tcol <= as_utc(end))
        if limit is not None:
            q = q.order_by(tcol.desc(), d.c.decision_id.desc()).limit(limit)
        else:
            q = q.order_by(tcol, d.c.decision_id)
        with self._read() as conn:
            rows = conn.execute(q).all()
        df = _frame(rows, [d.c[c] for c in DECISION_COLUMNS])
        if limit is not None:
            df = df.iloc[::-1].reset_index(drop=True)
        return df

    def count_decisions(self, pair: str | None = None) -> int:
        d = self.t.decisions
        q = sa.select(sa.func.count()).select_from(d)
        if pair is not None:
            q = q.where(d.c.pair == pair)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def set_realized(
        self, values: Mapping[str, float] | Iterable[tuple[str, float]], at: Any = None
    ) -> int:
        """Record realised targets for decisions (monitoring); returns rows updated."""
        items = list(values.items()) if isinstance(values, Mapping) else list(values)
        if not items:
            return 0
        when = as_utc(at) if at is not None else utcnow()
        d = self.t.decisions
        stmt = (
            d.update()
            .where(d.c.decision_id == sa.bindparam("b_id"))
            .values(realized_target=sa.bindparam("b_val"), realized_at=sa.bindparam("b_at"))
        )
        params = [{"b_id": i, "b_val": float(v), "b_at": when} for i, v in items]
        return int(self._write(lambda conn: conn.execute(stmt, params).rowcount))

    # -- promotion history --------------------------------------------------------------
    def record_promotion(
        self,
        pair: str,
        model_name: str,
        *,
        action: PromotionAction,
        to_version: str | int | None,
        from_version: str | int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        at: Any = None,
    ) -> int:
        """Append one event to the promotion history; returns its id.

        * ``promote``: ``to_version`` became production (``from_version``: the one it
          replaced, or None). ``to_version`` is required.
        * ``rollback``: production went from ``from_version`` back to ``to_version``
          (normally :meth:`previous_production`; None = no production version left).
        * ``approve``/``reject``: ``to_version`` is the version concerned; production is
          unchanged.

        ``actor`` defaults to the OS user (:func:`current_actor`); the API passes the key id.
        """
        if action not in PROMOTION_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(PROMOTION_ACTIONS)}")
        if action in ("promote", "approve", "reject") and to_version is None:
            raise ValueError(f"{action} needs to_version")
        row = {
            "pair": pair,
            "model_name": model_name,
            "from_version": None if from_version is None else str(from_version),
            "to_version": None if to_version is None else str(to_version),
            "action": action,
            "actor": actor or current_actor(),
            "reason": reason,
            "at": at if at is not None else utcnow(),
        }
        p = self.t.promotions
        return int(
            self._write(lambda conn: conn.execute(p.insert().returning(p.c.id), row).scalar_one())
        )

    def promotion_history(self, pair: str | None = None) -> pd.DataFrame:
        """Promotion events (oldest first) for ``pair`` or all pairs."""
        p = self.t.promotions
        cols = (
            "id",
            "pair",
            "model_name",
            "action",
            "from_version",
            "to_version",
            "actor",
            "reason",
            "at",
        )
        q = sa.select(*[p.c[c] for c in cols]).order_by(p.c.id)
        if pair is not None:
            q = q.where(p.c.pair == pair)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return _frame(rows, [p.c[c] for c in cols])

    def production_stack(self, pair: str) -> list[str]:
        """The production "undo stack" for ``pair``, oldest first; the last item is the
        current production version according to the history.

        Semantics (replayed from the history, in id order):

        * ``promote v``: push ``v`` (nothing happens if ``v`` is already on top);
        * ``rollback``: pop the top. So 1 -> 2 -> 3 then two rollbacks walk 3 -> 2 -> 1,
          never 3 -> 2 -> 3 (a rollback undoes the last change; it is not "swap with the
          one before"). If the recorded ``to_version`` disagrees with the new top (an
          explicit target or a history written by another tool), the record wins: the
          stack is cut back to the last occurrence of that version, or the version is
          pushed if it was never in production; ``to_version`` None empties the stack;
        * ``approve``/``reject``: no change.

        The registry's ``production`` alias is the authority on what is served; this
        history is the authority on what was served when, and what a rollback restores.
        """
        p = self.t.promotions
        q = (
            sa.select(p.c.action, p.c.to_version)
            .where(p.c.pair == pair, p.c.action.in_(("promote", "rollback")))
            .order_by(p.c.id)
        )
        with self._read() as conn:
            events = conn.execute(q).all()
        stack: list[str] = []
        for action, to in events:
            if action == "promote":
                if not stack or stack[-1] != to:
                    stack.append(to)
                continue
            if stack:
                stack.pop()
            if to is None:
                stack.clear()
            elif not stack or stack[-1] != to:
                if to in stack:
                    del stack[len(stack) - stack[::-1].index(to) :]
                else:
                    stack.append(to)
        return stack

    def current_production(self, pair: str) -> str | None:
        """The production version according to the history (None if none)."""
        stack = self.production_stack(pair)
        return stack[-1] if stack else None

    def previous_production(self, pair: str) -> str | None:
        """The version that was in production before the current one, i.e. what a
        rollback restores; None when there is nothing to roll back to. See
        :meth:`production_stack` for the exact semantics (repeated rollbacks walk back
        through history)."""
        stack = self.production_stack(pair)
        return stack[-2] if len(stack) >= 2 else None

    # -- alerts -------------------------------------------------------------------------
    def raise_alert(
        self,
        rule: str,
        message: str,
        *,
        severity: str = "warning",
        pair: str | None = None,
        fingerprint: str | None = None,
        at: Any = None,
    ) -> AlertResult:
        """Open an alert, or bump the open one with the same fingerprint (de-dup).

        ``fingerprint`` defaults to ``"<rule>:<pair or *>"``. A database unique index allows
        one open alert per fingerprint, so two processes raising the same alert at once
        still produce one row (``count`` records how many times it fired).
        """
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        fp = fingerprint or f"{rule}:{pair or '*'}"
        when = as_utc(at) if at is not None else utcnow()
        a = self.t.alerts

        def _do(conn: Connection) -> AlertResult:
            cur = conn.execute(
                sa.select(a.c.id).where(a.c.fingerprint == fp, a.c.resolved_at.is_(None))
            ).first()
            if cur is not None:
                conn.execute(
                    a.update()
                    .where(a.c.id == cur[0])
                    .values(
                        last_seen_at=when,
                        count=a.c["count"] + 1,
                        message=message,
                        severity=severity,
                    )
                )
                return AlertResult(int(cur[0]), False)
            new_id = conn.execute(
                a.insert().returning(a.c.id),
                {
                    "at": when,
                    "last_seen_at": when,
                    "count": 1,
                    "severity": severity,
                    "rule": rule,
                    "pair": pair,
                    "message": message,
                    "fingerprint": fp,
                },
            ).scalar_one()
            return AlertResult(int(new_id), True)

        try:
            return self._write(_do)
        except IntegrityError:  # another process opened it between our select and insert
            return self._write(_do)

    def resolve_alert(self, fingerprint: str, at: Any = None) -> int:
        """Resolve the open alert with ``fingerprint``; returns 1, or 0 if none was open."""
        a = self.t.alerts
        when = as_utc(at) if at is not None else utcnow()
        stmt = (
            a.update()
            .where(a.c.fingerprint == fingerprint, a.c.resolved_at.is_(None))
            .values(resolved_at=when)
        )
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))

    def read_alerts(
        self, *, open_only: bool = False, pair: str | None = None, start: Any = None
    ) -> pd.DataFrame:
        """Alerts (oldest first), optionally only open ones / one pair / since ``start``."""
        a = self.t.alerts
        q = sa.select(a).order_by(a.c.id)
        if open_only:
            q = q.where(a.c.resolved_at.is_(None))
        if pair is not None:
            q = q.where(a.c.pair == pair)
        if start is not None:
            q = q.where(a.c.at >= as_utc(start))
        with self._read() as conn:
            rows = conn.execute(q).all()
        return _frame(rows, list(a.c))


def _retry_locked(fn: Callable[[], Any], attempts: int = 50) -> Any:
    import sqlite3

    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _is_locked(e) or i == attempts - 1:
                raise
            time.sleep(0.02)
    return None  # pragma: no cover


_DECISION_SET = frozenset(DECISION_COLUMNS)
_DECISION_FLOAT_COLUMNS = (
    "prediction",
    "interval_lo",
    "interval_hi",
    "confidence_level",
    "signal_strength",
    "latency_ms",
    "realized_target",
)


def _prepare_decision(r: Mapping[str, Any]) -> dict[str, Any]:
    extra = set(r) - _DECISION_SET
    if extra:
        raise ValueError(f"unknown decision field(s): {', '.join(sorted(extra))}")
    row: dict[str, Any] = {c: r.get(c) for c in DECISION_COLUMNS}
    if not row["pair"]:
        raise ValueError("a decision needs a pair")
    if row["decision_id"] is None:
        row["decision_id"] = new_decision_id()
    else:
        row["decision_id"] = str(row["decision_id"])
    if row["request_time"] is None:
        row["request_time"] = utcnow()
    if row["model_version"] is not None:
        row["model_version"] = str(row["model_version"])
    for c in _DECISION_FLOAT_COLUMNS:
        if row[c] is not None:
            row[c] = float(row[c])  # numpy scalars -> float (psycopg cannot adapt them)
    if row["horizon"] is not None:
        row["horizon"] = int(row["horizon"])
    return row


def _frame(rows: Sequence[Any], columns: Sequence[sa.ColumnElement[Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with stable dtypes even when empty or all-NULL: timestamps
    ``datetime64[ns, UTC]``, floats ``float64``, integers nullable ``Int64``."""
    import pandas as pd

    names = [str(c.key) for c in columns]
    df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=names)
    for c, name in zip(columns, names, strict=True):
        if isinstance(c.type, UTCDateTime):
            df[name] = pd.DatetimeIndex(pd.to_datetime(df[name], utc=True)).as_unit("ns")
        elif isinstance(c.type, sa.Float):
            df[name] = df[name].astype("float64")
        elif isinstance(c.type, sa.Integer):
            df[name] = df[name].astype("Int64")
    return df


# ---------------------------------------------------------------------------------------
# background decision writer
# ---------------------------------------------------------------------------------------
class DecisionLogWriter:
    """Appends decisions off the request path.

    ``submit(row)`` is a queue put (microseconds); a daemon thread writes batches of up to
    ``max_batch`` rows per transaction, so one fsync and one lock acquisition serve many
    requests and a busy SQLite lock never stalls a request.

    Nothing is dropped: when the queue is full for ``put_timeout_s`` the caller writes
    its row synchronously (back-pressure instead of loss). A batch that fails is retried
    ``retries`` times, then logged at ERROR with its decision ids and counted in
    :attr:`failed` (the caller's ``on_error`` hook, e.g. a Prometheus counter, is called).

    Create it in the worker process that uses it (e.g. in the FastAPI lifespan): threads
    do not survive ``fork()``. Call :meth:`close` at shutdown to drain the queue.
    """

    _STOP = object()

    def __init__(
        self,
        state: StateDB,
        *,
        max_batch: int = 500,
        max_queue: int = 50_000,
        put_timeout_s: float = 1.0,
        retries: int = 3,
        on_error: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self.state = state
        self.max_batch = max_batch
        self.put_timeout_s = put_timeout_s
        self.retries = retries
        self.on_error = on_error
        self.written = 0
        self.failed = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._start_lock = threading.Lock()
        self._closed = False

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

    def submit(self, row: Mapping[str, Any]) -> str:
        """Queue one decision; returns its id (generated if absent). Validates at once,
        so a bad row fails in the caller, not later on the thread."""
        if self._closed:
            raise StateError("decision log writer is closed")
        prepared = _prepare_decision(row)
        self._ensure_thread()
        try:
            self._q.put(prepared, timeout=self.put_timeout_s)
        except queue.Full:
            self.state.log_decisions([prepared])
            self.written += 1
        return str(prepared["decision_id"])

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every row submitted before this call is written (or failed)."""
        if self._thread is None or not self._thread.is_alive():
            return self._q.empty()
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Drain the queue and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._q.put(self._STOP)
            self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._q.qsize()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch: list[dict[str, Any]] = []
            markers: list[Any] = []
            stop = False
            while True:
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
                    break
            if batch:
                self._write_batch(batch)
            for m in markers:
                m.set()
            if stop:
                return

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(self.retries + 1):
            try:
                self.state.log_decisions(batch)
                self.written += len(batch)
                return
            except Exception as e:
                if attempt < self.retries:
                    time.sleep(0.05 * 2**attempt)
                    continue
                self.failed += len(batch)
                log.error(
                    "decision log: %d decisions could not be written (%s); ids: %s",
                    len(batch),
                    e,
                    ",".join(r["decision_id"] for r in batch),
                )
                if self.on_error is not None:
                    try:
                        self.on_error(e, len(batch))
                    except Exception:  # pragma: no cover - a hook must not kill the thread
                        log.exception("decision log on_error hook failed")


# ---------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------
def open_state(settings: Settings | None = None, *, url: str | None = None) -> StateDB:
    """Open the state database named by ``url`` or ``settings.resolved_state_url``."""
    if url is None:
        if settings is None:
            from bqx.config import load_settings

            settings = load_settings()
        url = settings.resolved_state_url
    return StateDB(url)
