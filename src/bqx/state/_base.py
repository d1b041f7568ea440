"""Core of the state database: engine, transactions, schema, shared helpers.

One module per table family sits beside this one (keys, decisions, promotions, alerts);
each declares its tables in a ``define(md, prefix)`` function and its methods in a mixin
over :class:`StateBase`. See :mod:`bqx.state` for the concurrency design."""

from __future__ import annotations

import getpass
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from bqx.errors import BqxError, ConfigError

if TYPE_CHECKING:
    import pandas as pd


log = logging.getLogger(__name__)

T = TypeVar("T")


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


# ---------------------------------------------------------------------------------------
# schema: each family module contributes its tables
# ---------------------------------------------------------------------------------------
class Tables:
    """The tables of one :class:`StateBase` (attributes set by the family modules)."""

    metadata: sa.MetaData
    api_keys: sa.Table
    decisions: sa.Table
    promotions: sa.Table
    alerts: sa.Table
    leases: sa.Table
    ops_triggers: sa.Table
    ops_tasks: sa.Table
    rollouts: sa.Table
    rollout_events: sa.Table
    rollout_health: sa.Table
    experiments: sa.Table
    paper_sessions: sa.Table
    paper_trades: sa.Table
    paper_equity: sa.Table
    captures: sa.Table
    capture_feature_sets: sa.Table
    alert_notices: sa.Table
    online_pairs: sa.Table
    positions: sa.Table
    account: sa.Table
    forensics: sa.Table
    outbox: sa.Table
    monitor_runs: sa.Table
    service_stats: sa.Table
    alert_acks: sa.Table

    def __init__(self, metadata: sa.MetaData) -> None:
        self.metadata = metadata


def build_tables(prefix: str) -> Tables:
    """Table definitions. ``prefix`` isolates test runs sharing one PostgreSQL database."""
    from bqx.state import FAMILIES

    t = Tables(sa.MetaData())
    for family in FAMILIES:
        for name, table in family.define(t.metadata, prefix).items():
            setattr(t, name, table)
    return t


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
    """Hide a password in a URL for messages (the one redaction: :func:`bqx.infra.redact`)."""
    from bqx.infra.redact import redact

    return redact(url)


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
# the database
# ---------------------------------------------------------------------------------------
class StateBase:
    """Engine, transactions and schema of the state database; the table families add
    their methods as mixins (see :class:`bqx.state.StateDB`). Thread-safe; one engine
    per process (fork-safe).

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
        tolerate_unreachable: bool = False,
    ) -> None:
        if prefix and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
            raise ConfigError(f"table prefix {prefix!r} must be a short SQL identifier")
        self.url = normalize_state_url(url)
        self.prefix = prefix
        self.busy_timeout_s = busy_timeout_s
        self.t = build_tables(prefix)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = -1
        if self.dialect == "sqlite":
            path = _sqlite_path(self.url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        #: tables not created yet because the server was unreachable at construction
        self._tables_pending = False
        if create:
            try:
                self.create_tables()
            except StateError:
                if not tolerate_unreachable:
                    raise
                # a server that starts before its database: create them on first use
                log.warning("state database %s unreachable at start", redact_url(self.url))
                self._tables_pending = True

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateDB({redact_url(self.url)!r})"

    # -- transactions -------------------------------------------------------------------
    def _write(self, fn: Callable[[Connection], T], *, attempts: int = 5) -> T:
        """Run ``fn`` in one write transaction (``BEGIN IMMEDIATE`` on SQLite), retrying
        the whole transaction on a lock error. ``fn`` must only touch the database."""
        self._ensure_tables()
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

    def _ensure_tables(self) -> None:
        if self._tables_pending:
            self._tables_pending = False
            try:
                self.create_tables()
            except Exception:
                self._tables_pending = True
                raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_tables()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as e:
            raise self._wrap(e) from e

    def _wrap(self, e: DBAPIError) -> StateError:
        return StateError(
            f"state database {redact_url(self.url)}: "
            f"{redact_url((str(e.orig).strip().splitlines() or ['error'])[0])}",
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
            add_missing_columns(conn, self.t.metadata)

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


def add_missing_columns(conn: Connection, metadata: sa.MetaData) -> list[str]:
    """Schema migration for columns added to an existing table: ``ALTER TABLE ... ADD
    COLUMN`` for every column of ``metadata`` the database table lacks (SQLite and
    PostgreSQL; ``create_all`` only creates missing *tables*). A family adds a column by
    declaring it in its ``define`` - it must be nullable (old rows get NULL). Returns the
    ``table.column`` names added. Idempotent; concurrent creators are serialised by the
    caller (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``)."""
    insp = sa.inspect(conn)
    names = [t.name for t in metadata.sorted_tables]
    # one catalogue query on PostgreSQL (get_multi_columns), PRAGMAs on SQLite
    cols = insp.get_multi_columns(filter_names=names)
    present = {k[1]: {c["name"] for c in v} for k, v in cols.items()}
    added = []
    for table in metadata.sorted_tables:
        have = present.get(table.name)
        if have is None:  # pragma: no cover - created just before by create_all
            continue
        for col in table.columns:
            if col.name in have:
                continue
            if not col.nullable or col.primary_key:
                raise StateError(
                    f"column {table.name}.{col.name} is missing and cannot be added (not nullable)",
                    hint="declare new columns nullable so existing state DBs can migrate",
                )
            prep = conn.dialect.identifier_preparer
            ddl = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {prep.quote(table.name)} ADD COLUMN {prep.quote(col.name)} {ddl}"
            )
            log.info("state DB: added column %s.%s", table.name, col.name)
            added.append(f"{table.name}.{col.name}")
    return added


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


def _frame(rows: Sequence[Any], columns: Sequence[sa.ColumnElement[Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with stable dtypes even when empty or all-NULL: timestamps
    ``datetime64[ns, UTC]``, floats ``float64``, integers nullable ``Int64``."""
    import pandas as pd

    names = [str(c.key) for c in columns]
    df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=names)
    for c, name in zip(columns, names, strict=True):
        if isinstance(c.type, UTCDateTime):
            df[name] = pd.DatetimeIndex(
                pd.to_datetime(df[name], utc=True, format="ISO8601")  # datetime or ISO text
            ).as_unit("ns")
        elif isinstance(c.type, sa.Float):
            df[name] = df[name].astype("float64")
        elif isinstance(c.type, sa.Integer):
            df[name] = df[name].astype("Int64")
    return df


def compiled_insert(
    state: Any, stmt: Any, table: sa.Table, columns: Sequence[str] | None = None
) -> tuple[str, list[tuple[str, Any]]]:
    """``stmt`` (an insert into ``table`` of ``columns``, default all) compiled for this
    engine's dialect with positional parameters: its SQL text and, per parameter, the
    column key and the bind processor SQLAlchemy itself applies to that column's values
    (None: none). Columns left out are left to the database (NULL), as a Core insert of
    rows without those keys does."""
    dialect = state.engine.dialect
    cols = [c.key for c in table.c] if columns is None else list(columns)
    compiled = stmt.compile(dialect=dialect, column_keys=cols)
    keys = list(compiled.positiontup or ())
    if sorted(keys) != sorted(cols):  # pragma: no cover - defensive
        raise AssertionError(f"unexpected parameters of {table.name}: {keys}")
    procs = [(k, table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) for k in keys]
    return str(compiled), procs


def bind_rows(
    rows: Iterable[Mapping[str, Any]], procs: list[tuple[str, Any]]
) -> list[tuple[Any, ...]]:
    """The positional parameters of ``rows`` for a :func:`compiled_insert` statement: each
    column's value through its bind processor, in the statement's order."""
    return [tuple(r[c] if p is None else p(r[c]) for c, p in procs) for r in rows]
