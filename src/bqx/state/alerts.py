"""Alerts, de-duplicated by fingerprint (one open alert per fingerprint)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

if TYPE_CHECKING:
    import pandas as pd


from bqx.state._base import StateBase, UTCDateTime, _frame, as_utc, utcnow

log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertResult:
    """Outcome of :meth:`StateDB.raise_alert`: the open alert's id and whether it is new."""

    id: int
    created: bool


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
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
    return {"alerts": alerts}


class AlertsMixin(StateBase):
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
