"""Acknowledged alerts (``bqx alerts ack``): someone has seen an open alert.

An acknowledged alert stays open (it resolves when its condition clears) but its repeat
notifications stop - until it escalates above the severity it had when acknowledged, which
notifies again as usual. One row per alert; acknowledging again updates it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``alert_acks``: one row per acknowledged alert."""
    t = sa.Table(
        f"{p}alert_acks",
        md,
        sa.Column("alert_id", sa.Integer, primary_key=True),
        sa.Column("acked_at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
    )
    return {"alert_acks": t}


class AcksMixin(StateBase):
    def ack_alert(
        self, alert: int | str, *, actor: str, note: str | None = None, at: Any = None
    ) -> int | None:
        """Acknowledge the *open* alert with id ``alert`` (an int or digits) or fingerprint;
        returns its id, or None when no open alert matches."""
        a, t = self.t.alerts, self.t.alert_acks
        when = as_utc(at) if at is not None else utcnow()
        key = str(alert)
        cond = a.c.id == int(key) if key.isdigit() else a.c.fingerprint == key

        def _do(conn: Any) -> int | None:
            row = conn.execute(
                sa.select(a.c.id, a.c.severity).where(cond, a.c.resolved_at.is_(None))
            ).first()
            if row is None:
                return None
            vals = {"acked_at": when, "actor": actor, "severity": row[1], "note": note}
            done = conn.execute(t.update().where(t.c.alert_id == row[0]).values(**vals))
            if done.rowcount == 0:
                conn.execute(t.insert().values(alert_id=row[0], **vals))
            return int(row[0])

        return self._write(_do)

    def read_acks(self) -> dict[int, dict[str, Any]]:
        """Acknowledgements keyed by alert id."""
        t = self.t.alert_acks
        with self._read() as conn:
            rows = conn.execute(sa.select(t)).mappings().all()
        return {int(r["alert_id"]): dict(r) for r in rows}
