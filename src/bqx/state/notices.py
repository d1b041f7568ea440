"""Alert notification bookkeeping: what was sent for each alert, so that a notifier outage
loses nothing (an unsent notice is retried on the next monitoring pass)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``alert_notices``: one row per (alert, notifier)."""
    t = sa.Table(
        f"{p}alert_notices",
        md,
        sa.Column("alert_id", sa.Integer, primary_key=True),
        sa.Column("notifier", sa.String(32), primary_key=True),
        sa.Column("sent_severity", sa.String(16)),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("resolve_sent_at", UTCDateTime),
        sa.Column("failures", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.Text),
    )
    return {"alert_notices": t}


class NoticesMixin(StateBase):
    def read_notices(self) -> dict[tuple[int, str], dict[str, Any]]:
        """All notice rows keyed by (alert_id, notifier)."""
        t = self.t.alert_notices
        with self._read() as conn:
            rows = conn.execute(sa.select(t)).mappings().all()
        return {(int(r["alert_id"]), str(r["notifier"])): dict(r) for r in rows}

    def record_notice(
        self,
        alert_id: int,
        notifier: str,
        *,
        ok: bool,
        severity: str | None = None,
        resolve: bool = False,
        error: str | None = None,
        at: Any = None,
    ) -> None:
        """Record a delivery attempt (success moves sent_*; failure bumps ``failures``)."""
        t = self.t.alert_notices
        when = as_utc(at) if at is not None else utcnow()

        def _do(conn: Any) -> None:
            cur = conn.execute(
                sa.select(t.c.failures).where(t.c.alert_id == alert_id, t.c.notifier == notifier)
            ).first()
            vals: dict[str, Any] = {}
            if ok:
                if resolve:
                    vals["resolve_sent_at"] = when
                else:
                    vals["sent_severity"] = severity
                    vals["sent_at"] = when
                vals["last_error"] = None
            else:
                vals["failures"] = (int(cur[0]) if cur else 0) + 1
                vals["last_error"] = error
            if cur is None:
                vals.setdefault("failures", 0)
                conn.execute(t.insert().values(alert_id=alert_id, notifier=notifier, **vals))
            else:
                conn.execute(
                    t.update()
                    .where(t.c.alert_id == alert_id, t.c.notifier == notifier)
                    .values(**vals)
                )

        self._write(_do)
