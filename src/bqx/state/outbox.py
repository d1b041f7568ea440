"""The event outbox: events wait here until the broker has them (bqx.events).

Why: the broker can be down; the state DB is what every producer already writes. Decisions,
promotion-history rows (approved, promoted, rolled back, rejected) and rollout steps (all
already logged in their own tables) are copied into the outbox by the relay (anti-join on
the idempotency key, so a relay that was down misses nothing); other producers call
:meth:`OutboxMixin.enqueue_event` (the registry: ``registered``). Every event on the
``models`` topic carries ``event``: registered / approved / rejected / promoted /
rolled_back / rollout_step. The relay delivers
undelivered rows in ``id`` order and marks them; the broker side de-duplicates by key, so a
crash between "published" and "marked" re-sends harmlessly (at-least-once, idempotent).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bqx.state._base import StateBase, UTCDateTime, utcnow


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    outbox = sa.Table(
        f"{p}outbox",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False, unique=True),  # idempotency key
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_outbox_pending", outbox.c.delivered_at, outbox.c.id)
    return {"outbox": outbox}


#: promotion-history action -> lifecycle event name
PROMOTION_EVENTS = {
    "promote": "promoted",
    "rollback": "rolled_back",
    "approve": "approved",
    "reject": "rejected",
}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


class OutboxMixin(StateBase):
    def enqueue_event(self, topic: str, key: str, payload: dict[str, Any]) -> bool:
        """Add one event (False if ``key`` is already in the outbox: idempotent)."""
        o = self.t.outbox

        def _do(conn: Connection) -> bool:
            if conn.execute(sa.select(o.c.id).where(o.c.key == key)).first():
                return False
            conn.execute(
                o.insert(),
                {"created_at": utcnow(), "topic": topic, "key": key, "payload": payload},
            )
            return True

        return bool(self._write(_do))

    def capture_events(self, limit: int = 1000) -> int:
        """Copy decisions, promotion-history rows and rollout steps not yet in the outbox
        into it (keys: the decision id, ``promotion:<id>``, ``rollout_event:<id>``), oldest
        first. Returns how many."""
        o, d, pr, re_ = self.t.outbox, self.t.decisions, self.t.promotions, self.t.rollout_events
        qd = (
            sa.select(d)
            .select_from(d.outerjoin(o, o.c.key == d.c.decision_id))
            .where(o.c.id.is_(None))
            .order_by(d.c.request_time, d.c.decision_id)
            .limit(limit)
        )
        pkey = sa.literal("promotion:") + sa.cast(pr.c.id, sa.String)
        qp = (
            sa.select(pr)
            .select_from(pr.outerjoin(o, o.c.key == pkey))
            .where(o.c.id.is_(None))
            .order_by(pr.c.id)
            .limit(limit)
        )
        rkey = sa.literal("rollout_event:") + sa.cast(re_.c.id, sa.String)
        qr = (
            sa.select(re_)
            .select_from(re_.outerjoin(o, o.c.key == rkey))
            .where(o.c.id.is_(None))
            .order_by(re_.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            dec = [dict(r._mapping) for r in conn.execute(qd).all()]
            pro = [dict(r._mapping) for r in conn.execute(qp).all()]
            rol = [dict(r._mapping) for r in conn.execute(qr).all()]
        rows = [("decisions", str(r["decision_id"]), _jsonable(r)) for r in dec]
        rows += [
            (
                "models",
                f"promotion:{r['id']}",
                {"event": PROMOTION_EVENTS[r["action"]]} | _jsonable(r),
            )
            for r in pro
        ]
        rows += [
            ("models", f"rollout_event:{r['id']}", {"event": "rollout_step"} | _jsonable(r))
            for r in rol
        ]
        now = utcnow()

        def _do(conn: Connection) -> int:
            n = 0
            for topic, key, payload in rows:
                if conn.execute(sa.select(o.c.id).where(o.c.key == key)).first():
                    continue
                conn.execute(
                    o.insert(),
                    {"created_at": now, "topic": topic, "key": key, "payload": payload},
                )
                n += 1
            return n

        return int(self._write(_do)) if rows else 0

    def pending_events(self, limit: int = 500) -> list[dict[str, Any]]:
        o = self.t.outbox
        q = sa.select(o).where(o.c.delivered_at.is_(None)).order_by(o.c.id).limit(limit)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]

    def mark_delivered(self, ids: list[int]) -> None:
        if not ids:
            return
        o = self.t.outbox
        stmt = o.update().where(o.c.id.in_(ids)).values(delivered_at=utcnow())
        self._write(lambda conn: conn.execute(stmt))
