"""Results of monitoring passes: one compact summary per pass (``bqx monitor run``, the
operator's monitoring task), read by the service's Prometheus gauges and ``/dashboard``.

The summary is small and bounded (per pair: the drift verdict and its five worst features;
per pair, version and window: live R², directional accuracy and coverage with their
standard errors), so the service never recomputes drift or quality to answer a scrape.
Passes older than :data:`RUN_RETENTION_DAYS` are purged by the pass itself.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow

#: Pass summaries are kept this many days (one pass every 5 min: ~2,000 rows of ~10 kB).
RUN_RETENTION_DAYS = 7


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``monitor_runs``: one row per monitoring pass."""
    t = sa.Table(
        f"{p}monitor_runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ran_at", UTCDateTime, nullable=False),
        sa.Column("as_of", UTCDateTime, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
    )
    sa.Index(f"{p}ix_monitor_runs_ran_at", t.c.ran_at)
    return {"monitor_runs": t}


class MonitorRunsMixin(StateBase):
    def record_monitor_run(
        self,
        summary: dict[str, Any],
        *,
        as_of: Any,
        seconds: float,
        errors: int = 0,
        at: Any = None,
    ) -> int:
        """Store one pass summary (JSON-ready dict); returns its id."""
        t = self.t.monitor_runs
        vals = {
            "ran_at": as_utc(at) if at is not None else utcnow(),
            "as_of": as_utc(as_of),
            "seconds": float(seconds),
            "errors": int(errors),
            "summary": summary,
        }

        def _do(conn: Any) -> int:
            key = conn.execute(t.insert().values(**vals)).inserted_primary_key
            return int(key[0]) if key is not None else 0

        return self._write(_do)

    def latest_monitor_run(self) -> dict[str, Any] | None:
        """The newest pass (by ``ran_at``, then id) as a dict, or None before the first."""
        t = self.t.monitor_runs
        q = sa.select(t).order_by(t.c.ran_at.desc(), t.c.id.desc()).limit(1)
        with self._read() as conn:
            r = conn.execute(q).mappings().first()
        return dict(r) if r is not None else None

    def purge_monitor_runs(self, older_than: Any) -> int:
        """Delete pass summaries that ran before ``older_than``; returns rows deleted."""
        t = self.t.monitor_runs
        stmt = t.delete().where(t.c.ran_at < as_utc(older_than))
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))
