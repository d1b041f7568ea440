"""Per-decision explanations (forensics), filled off the request path by a worker.

Why an outbox over the decision log instead of a queue: the decision log is already written
for every decision; a decision without a ``forensics`` row is pending. A worker that was
down simply finds more pending rows when it comes back (nothing is lost, nothing is sent
twice: the row's primary key is the decision id).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bqx.state._base import StateBase, UTCDateTime, utcnow


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    forensics = sa.Table(
        f"{p}forensics",
        md,
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # done | failed
        sa.Column("explanation", sa.JSON),
        sa.Column("error", sa.Text),
    )
    sa.Index(f"{p}ix_forensics_created", forensics.c.created_at)
    return {"forensics": forensics}


class ForensicsMixin(StateBase):
    def pending_forensics(self, limit: int = 100) -> list[dict[str, Any]]:
        """Oldest decisions without an explanation (the outbox), at most ``limit``."""
        d, f = self.t.decisions, self.t.forensics
        q = (
            sa.select(d)
            .select_from(d.outerjoin(f, f.c.decision_id == d.c.decision_id))
            .where(f.c.decision_id.is_(None))
            .order_by(d.c.request_time, d.c.decision_id)
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]

    def save_forensics(
        self, decision_id: str, explanation: dict[str, Any] | None, error: str | None = None
    ) -> bool:
        """Store one explanation (idempotent: a second save of the same id is a no-op)."""
        f = self.t.forensics
        row = {
            "decision_id": decision_id,
            "created_at": utcnow(),
            "status": "failed" if error else "done",
            "explanation": explanation,
            "error": error,
        }

        def _do(conn: Connection) -> bool:
            if conn.execute(
                sa.select(f.c.decision_id).where(f.c.decision_id == decision_id)
            ).first():
                return False
            conn.execute(f.insert(), row)
            return True

        try:
            return self._write(_do)
        except IntegrityError:
            return False

    def read_forensics(self, decision_id: str) -> dict[str, Any] | None:
        f = self.t.forensics
        with self._read() as conn:
            r = conn.execute(sa.select(f).where(f.c.decision_id == decision_id)).first()
        return dict(r._mapping) if r is not None else None

    def decision_exists(self, decision_id: str) -> bool:
        d = self.t.decisions
        with self._read() as conn:
            q = sa.select(d.c.decision_id).where(d.c.decision_id == decision_id)
            return conn.execute(q).first() is not None

    def purge_forensics(self, older_than_days: float) -> int:
        """Delete explanations older than the retention; returns how many."""
        f = self.t.forensics
        cut = utcnow() - timedelta(days=older_than_days)
        return int(
            self._write(lambda c: c.execute(f.delete().where(f.c.created_at < cut)).rowcount)
        )
