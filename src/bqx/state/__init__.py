"""Transactional state: API keys, the decision log, promotion history and alerts.

A package with one module per table family (``keys``, ``decisions``, ``promotions``,
``alerts``; new families add a module and a line to :data:`FAMILIES`), over a shared
core in ``_base``. Everything public is re-exported here: ``from bqx.state import ...``.

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

from typing import TYPE_CHECKING

from bqx.state import (
    acks,
    alerts,
    captures,
    decisions,
    experiments,
    forensics,
    keys,
    leases,
    monitor_runs,
    notices,
    online,
    outbox,
    paper,
    positions,
    promotions,
    rollouts,
    service_stats,
)
from bqx.state._base import (
    StateBase,
    StateError,
    Tables,
    UTCDateTime,
    as_utc,
    normalize_state_url,
    redact_url,
    utcnow,
)
from bqx.state.acks import AcksMixin
from bqx.state.alerts import SEVERITIES, AlertResult, AlertsMixin
from bqx.state.captures import CapturesMixin, CaptureWriter
from bqx.state.decisions import (
    DECISION_COLUMNS,
    DecisionLogWriter,
    DecisionsMixin,
    new_decision_id,
)
from bqx.state.experiments import ExperimentsMixin
from bqx.state.forensics import ForensicsMixin
from bqx.state.keys import ROLES, KeysMixin
from bqx.state.leases import LeasesMixin
from bqx.state.monitor_runs import MonitorRunsMixin
from bqx.state.notices import NoticesMixin
from bqx.state.online import OnlineMixin
from bqx.state.outbox import OutboxMixin
from bqx.state.paper import PaperMixin
from bqx.state.positions import Portfolio, PortfolioInputError, PositionsMixin
from bqx.state.promotions import (
    PROMOTION_ACTIONS,
    PromotionAction,
    PromotionsMixin,
    current_actor,
)
from bqx.state.rollouts import RolloutExistsError, RolloutsMixin
from bqx.state.service_stats import ServiceStatsMixin

if TYPE_CHECKING:
    from bqx.config import Settings

#: The table families, in creation order. A new family: a module with ``define(md, p)``
#: and a mixin; add the module here and the mixin to :class:`StateDB`.
FAMILIES = (
    keys,
    decisions,
    promotions,
    alerts,
    paper,
    leases,
    rollouts,
    experiments,
    positions,
    forensics,
    outbox,
    notices,
    captures,
    monitor_runs,
    service_stats,
    acks,
    online,
)

__all__ = [
    "DECISION_COLUMNS",
    "FAMILIES",
    "PROMOTION_ACTIONS",
    "ROLES",
    "SEVERITIES",
    "AlertResult",
    "CaptureWriter",
    "CapturesMixin",
    "DecisionLogWriter",
    "Portfolio",
    "PortfolioInputError",
    "PromotionAction",
    "RolloutExistsError",
    "StateDB",
    "StateError",
    "Tables",
    "UTCDateTime",
    "as_utc",
    "current_actor",
    "new_decision_id",
    "normalize_state_url",
    "open_state",
    "redact_url",
    "utcnow",
]


class StateDB(
    KeysMixin,
    DecisionsMixin,
    PromotionsMixin,
    AlertsMixin,
    LeasesMixin,
    RolloutsMixin,
    ExperimentsMixin,
    PaperMixin,
    NoticesMixin,
    PositionsMixin,
    ForensicsMixin,
    OutboxMixin,
    CapturesMixin,
    MonitorRunsMixin,
    ServiceStatsMixin,
    AcksMixin,
    OnlineMixin,
    StateBase,
):
    """The state database. Thread-safe; one engine per process (fork-safe).

    ``prefix`` prefixes every table and index name (tests sharing one PostgreSQL database
    use a unique prefix and :meth:`drop_all`).
    """


def open_state(
    settings: Settings | None = None, *, url: str | None = None, tolerate_unreachable: bool = False
) -> StateDB:
    """Open the state database named by ``url`` or ``settings.resolved_state_url``.

    ``tolerate_unreachable``: a server that starts before its database gets a StateDB that
    creates its tables on first use (the API reports not ready meanwhile)."""
    if url is None:
        if settings is None:
            from bqx.config import load_settings

            settings = load_settings()
        url = settings.resolved_state_url
    return StateDB(url, tolerate_unreachable=tolerate_unreachable)
