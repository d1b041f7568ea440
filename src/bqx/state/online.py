"""Online learning state: per pair, whether online updates are enabled, paused (after
``online.max_rejections`` stability-check rejections in a row), the rejection streak and
the last update (time, version, result). A pair without a row is disabled."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """``online_pairs``: one row per pair ever enabled."""
    t = sa.Table(
        f"{p}online_pairs",
        md,
        sa.Column("pair", sa.String(16), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False, default=False),
        sa.Column("paused", sa.Boolean, nullable=False, default=False),
        sa.Column("paused_reason", sa.Text),
        sa.Column("rejection_streak", sa.Integer, nullable=False, default=0),
        sa.Column("updates", sa.Integer, nullable=False, default=0),
        sa.Column("rejections", sa.Integer, nullable=False, default=0),
        sa.Column("last_update_at", UTCDateTime),
        sa.Column("last_version", sa.String(64)),
        sa.Column("last_parent", sa.String(64)),
        sa.Column("last_result", sa.String(32)),
        sa.Column("last_detail", sa.JSON),
        sa.Column("changed_at", UTCDateTime, nullable=False),
    )
    return {"online_pairs": t}


_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "paused": False,
    "paused_reason": None,
    "rejection_streak": 0,
    "updates": 0,
    "rejections": 0,
    "last_update_at": None,
    "last_version": None,
    "last_parent": None,
    "last_result": None,
    "last_detail": None,
    "changed_at": None,
}


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["enabled"], d["paused"] = bool(d["enabled"]), bool(d["paused"])
    for k in ("last_update_at", "changed_at"):
        if d.get(k) is not None:
            d[k] = as_utc(d[k])
    return d


class OnlineMixin(StateBase):
    def online_state(self, pair: str) -> dict[str, Any]:
        """The pair's online-learning state (defaults: disabled, never updated)."""
        t = self.t.online_pairs
        with self._read() as conn:
            r = conn.execute(sa.select(t).where(t.c.pair == pair)).mappings().first()
        return _row(r) if r is not None else {"pair": pair, **_DEFAULTS}

    def online_states(self) -> list[dict[str, Any]]:
        t = self.t.online_pairs
        with self._read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.pair)).mappings().all()
        return [_row(r) for r in rows]

    def _online_upsert(self, conn: Connection, pair: str, values: dict[str, Any]) -> None:
        t = self.t.online_pairs
        values = {**values, "changed_at": utcnow()}
        n = conn.execute(t.update().where(t.c.pair == pair).values(**values)).rowcount
        if not n:
            conn.execute(t.insert().values(pair=pair, **{**_DEFAULTS, **values}))

    def set_online_enabled(self, pair: str, enabled: bool) -> dict[str, Any]:
        """Enable (also un-pauses and clears the rejection streak) or disable a pair."""
        vals: dict[str, Any] = {"enabled": enabled}
        if enabled:
            vals.update(paused=False, paused_reason=None, rejection_streak=0)
        self._write(lambda conn: self._online_upsert(conn, pair, vals))
        return self.online_state(pair)

    def record_online_update(
        self,
        pair: str,
        *,
        accepted: bool,
        version: str | None,
        parent: str | None,
        result: str,
        detail: dict[str, Any] | None = None,
        max_rejections: int = 3,
    ) -> dict[str, Any]:
        """Record one update's outcome (in one transaction). A rejection bumps the streak;
        at ``max_rejections`` in a row the pair is paused; ``result="unchanged"`` (an update
        whose forecasts equal its parent's, not registered) leaves the streak alone.
        Returns the new state."""
        t = self.t.online_pairs

        def _do(conn: Connection) -> None:
            cur = conn.execute(sa.select(t).where(t.c.pair == pair)).mappings().first()
            d = {**_DEFAULTS, **(dict(cur) if cur is not None else {})}
            streak = 0 if accepted else int(d["rejection_streak"]) + 1
            if result == "unchanged":
                streak = int(d["rejection_streak"])
            vals: dict[str, Any] = {
                "rejection_streak": streak,
                "updates": int(d["updates"]) + 1,
                "rejections": int(d["rejections"]) + (0 if accepted else 1),
                "last_update_at": utcnow(),
                "last_version": version,
                "last_parent": parent,
                "last_result": result,
                "last_detail": detail,
            }
            if not accepted and streak >= max_rejections:
                vals["paused"] = True
                vals["paused_reason"] = f"{streak} stability-check rejections in a row"
            self._online_upsert(conn, pair, vals)

        self._write(_do)
        return self.online_state(pair)
