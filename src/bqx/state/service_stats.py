"""Request statistics the prediction service writes for monitoring's operational rules.

Every replica (and every worker process of one) flushes, every ``monitor.stats_flush_s``,
the requests it served since its last flush: per route template, the request count, the
5xx count, the latency sum and a latency histogram (counts per bucket of
:data:`bqx.serving.metrics.LATENCY_BUCKETS`, plus +Inf). The monitoring pass sums the rows
of the last minutes over all instances: counts and histogram buckets add up across
replicas exactly (quantiles would not), so the 5xx rate and p99 are those of the whole
service, however many replicas there are and wherever they run - the pass needs no list of
replica addresses (see :mod:`bqx.monitoring.opsrules`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``service_stats``: one row per (instance, flush, route)."""
    t = sa.Table(
        f"{p}service_stats",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),  # end of the flushed interval
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors_5xx", sa.Integer, nullable=False),
        sa.Column("seconds_sum", sa.Float, nullable=False),
        sa.Column("buckets", sa.JSON, nullable=False),  # per-bucket counts (not cumulative)
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_service_stats_at", t.c.at)
    return {"service_stats": t}


class ServiceStatsMixin(StateBase):
    def write_service_stats(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert flushed rows (keys as the table's columns, ``at`` any timestamp)."""
        rows = [{**r, "at": as_utc(r["at"])} for r in rows]
        if not rows:
            return 0
        t = self.t.service_stats
        self._write(lambda conn: conn.execute(t.insert(), rows))
        return len(rows)

    def read_service_stats(self, start: Any, end: Any = None) -> list[dict[str, Any]]:
        """Rows with ``start < at <= end`` (all instances), oldest first."""
        t = self.t.service_stats
        q = sa.select(t).where(t.c.at > as_utc(start)).order_by(t.c.id)
        if end is not None:
            q = q.where(t.c.at <= as_utc(end))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def purge_service_stats(self, older_than: Any) -> int:
        """Delete rows flushed before ``older_than``; returns rows deleted."""
        t = self.t.service_stats
        stmt = t.delete().where(t.c.at < as_utc(older_than))
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))
