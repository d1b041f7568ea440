"""Monitoring passes: when each ran, how long it took, its errors and a per-pair summary
(live quality 1d/7d per version, worst drift) - what ``bqx monitor status`` shows without
recomputing anything."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow

#: Passes kept (older rows are deleted when a pass is recorded).
KEEP_RUNS = 2000


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``monitor_runs``: one row per monitoring pass."""
    t = sa.Table(
        f"{p}monitor_runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("as_of", UTCDateTime, nullable=False),  # end of the live windows
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("errors", sa.JSON),
        sa.Column("summary", sa.JSON),
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_monitor_runs_started", t.c.started_at)
    return {"monitor_runs": t}


class MonitorRunsMixin(StateBase):
    def record_monitor_run(
        self,
        *,
        as_of: Any,
        seconds: float,
        errors: list[str],
        summary: dict[str, Any],
        started_at: Any = None,
    ) -> int:
        """Record one pass; keeps the newest :data:`KEEP_RUNS`. Returns its id."""
        t = self.t.monitor_runs
        row = {
            "started_at": as_utc(started_at) if started_at is not None else utcnow(),
            "as_of": as_utc(as_of),
            "seconds": float(seconds),
            "ok": not errors,
            "errors": list(errors),
            "summary": summary,
        }

        def _do(conn: Any) -> int:
            new_id = int(conn.execute(t.insert().returning(t.c.id), row).scalar_one())
            if new_id > KEEP_RUNS:
                conn.execute(t.delete().where(t.c.id <= new_id - KEEP_RUNS))
            return new_id

        return int(self._write(_do))

    def monitor_runs(self, limit: int = 1) -> list[dict[str, Any]]:
        """The newest ``limit`` passes, newest first."""
        t = self.t.monitor_runs
        q = sa.select(t).order_by(t.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
