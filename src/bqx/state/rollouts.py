"""Rollouts: one row per rollout, its transition history, and per-worker health counters.

A rollout moves one pair from its baseline (production) version to a candidate:
``shadow`` -> ``canary`` (steps of candidate traffic) -> ``production``, or ends
``aborted``/``rolled_back``. A/B experiments are rollouts of kind ``experiment`` (arm A =
baseline, arm B = candidate, ``weight`` = B's share).

Invariants the database enforces or the methods guarantee:

* at most one *active* (shadow/canary) rollout per pair: a partial unique index, so two
  processes starting one at once cannot both succeed;
* every change is one transaction that updates the row *and* appends its event, guarded
  by a compare-and-set on ``gen`` (the row's change counter): an operator that restarts
  or loses its lease mid-step cannot apply the same step twice (the second update matches
  no row).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bqx.state._base import StateBase, UTCDateTime, _frame, utcnow

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ACTIVE_STATES: tuple[str, ...] = ("shadow", "canary")
FINAL_STATES: tuple[str, ...] = ("production", "aborted", "rolled_back", "stopped")
ROLLOUT_KINDS: tuple[str, ...] = ("canary", "bluegreen", "experiment")


class RolloutExistsError(Exception):
    """A pair already has an active rollout (the unique index refused a second one)."""


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    rollouts = sa.Table(
        f"{p}rollouts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("baseline_version", sa.String(64)),
        sa.Column("candidate_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        # 1 while shadow/canary (NULL otherwise): the partial unique index's key
        sa.Column("active", sa.Integer),
        sa.Column("paused", sa.Integer, nullable=False, default=0),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),  # -1 = shadow
        sa.Column("weight", sa.Float, nullable=False),  # candidate share served, 0..1
        sa.Column("shadow", sa.Integer, nullable=False),  # candidate predicts off-path
        sa.Column("gen", sa.Integer, nullable=False),
        sa.Column("dwell_s", sa.Float, nullable=False),
        sa.Column("shadow_s", sa.Float, nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("trigger_id", sa.Integer),
        sa.Column("gate", sa.JSON),
        sqlite_autoincrement=True,
    )
    sa.Index(
        f"{p}ux_rollouts_active_pair",
        rollouts.c.pair,
        unique=True,
        sqlite_where=rollouts.c.active == 1,
        postgresql_where=rollouts.c.active == 1,
    )
    events = sa.Table(
        f"{p}rollout_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, nullable=False),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("gen", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("from_weight", sa.Float),
        sa.Column("to_weight", sa.Float),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("rollout_id", "gen", name=f"{p}uq_rollout_events_gen"),
        sqlite_autoincrement=True,
    )
    health = sa.Table(
        f"{p}rollout_health",
        md,
        sa.Column("rollout_id", sa.Integer, primary_key=True),
        sa.Column("worker", sa.String(128), primary_key=True),
        sa.Column("arm", sa.String(16), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("p99_ms", sa.Float),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    return {
        "rollouts": rollouts,
        "rollout_events": events,
        "rollout_health": health,
    }


def _row(m: Any) -> dict[str, Any]:
    d = dict(m)
    if isinstance(d.get("steps"), str):
        d["steps"] = json.loads(d["steps"])
    for k in ("paused", "shadow"):
        if k in d:
            d[k] = bool(d[k])
    d.pop("active", None)
    return d


class RolloutsMixin(StateBase):
    # -- rollouts -----------------------------------------------------------------------
    def create_rollout(
        self,
        *,
        pair: str,
        kind: str,
        baseline_version: str | None,
        candidate_version: str,
        state: str,
        steps: list[float],
        step: int,
        weight: float,
        shadow: bool,
        dwell_s: float,
        shadow_s: float,
        actor: str,
        reason: str,
        trigger_id: int | None = None,
        gate: dict[str, Any] | None = None,
        experiment: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Insert an active rollout and its first event (and the experiment row when
        ``experiment`` is given) in one transaction. Raises :class:`RolloutExistsError`
        when the pair already has an active rollout."""
        if kind not in ROLLOUT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ROLLOUT_KINDS)}")
        if state not in ACTIVE_STATES:
            raise ValueError("a rollout starts in shadow or canary")
        ro, ev = self.t.rollouts, self.t.rollout_events

        def _do(conn: Connection) -> int:
            now = utcnow()
            rid = int(
                conn.execute(
                    ro.insert().returning(ro.c.id),
                    {
                        "pair": pair,
                        "kind": kind,
                        "baseline_version": baseline_version,
                        "candidate_version": candidate_version,
                        "state": state,
                        "active": 1,
                        "paused": 0,
                        "steps": list(steps),
                        "step": step,
                        "weight": weight,
                        "shadow": int(shadow),
                        "gen": 1,
                        "dwell_s": dwell_s,
                        "shadow_s": shadow_s,
                        "entered_at": now,
                        "created_at": now,
                        "updated_at": now,
                        "actor": actor,
                        "reason": reason,
                        "trigger_id": trigger_id,
                        "gate": gate,
                    },
                ).scalar_one()
            )
            conn.execute(
                ev.insert(),
                {
                    "rollout_id": rid,
                    "pair": pair,
                    "gen": 1,
                    "from_state": None,
                    "to_state": state,
                    "from_weight": None,
                    "to_weight": weight,
                    "action": "start",
                    "reason": reason,
                    "actor": actor,
                    "at": now,
                },
            )
            if experiment is not None:
                conn.execute(
                    self.t.experiments.insert(),
                    {**experiment, "rollout_id": rid, "state": "running", "created_at": now},
                )
            return rid

        try:
            rid = self._write(_do)
        except IntegrityError as e:
            raise RolloutExistsError(pair) from e
        out = self.get_rollout(rid)
        assert out is not None
        return out

    def transition_rollout(
        self,
        rollout_id: int,
        expected_gen: int,
        *,
        action: str,
        reason: str,
        actor: str,
        state: str | None = None,
        step: int | None = None,
        weight: float | None = None,
        shadow: bool | None = None,
        paused: bool | None = None,
        steps: list[float] | None = None,
        experiment: dict[str, Any] | None = None,
        reset_clock: bool = True,
    ) -> dict[str, Any] | None:
        """Apply one change if the row is still at ``expected_gen``; appends its event in
        the same transaction. Returns the new row, or None when someone else changed it
        first (the caller re-reads and decides again: a step is never applied twice).
        ``experiment``: values for the linked experiment row, in the same transaction."""
        ro, ev = self.t.rollouts, self.t.rollout_events

        def _do(conn: Connection) -> bool:
            cur = (
                conn.execute(sa.select(ro).where(ro.c.id == rollout_id, ro.c.gen == expected_gen))
                .mappings()
                .first()
            )
            if cur is None or cur["active"] != 1:
                return False
            now = utcnow()
            values: dict[str, Any] = {"gen": expected_gen + 1, "updated_at": now}
            new_state = state or cur["state"]
            values["state"] = new_state
            values["active"] = 1 if new_state in ACTIVE_STATES else None
            if step is not None:
                values["step"] = step
            if weight is not None:
                values["weight"] = weight
            if shadow is not None:
                values["shadow"] = int(shadow)
            if paused is not None:
                values["paused"] = int(paused)
            if steps is not None:
                values["steps"] = list(steps)
            if reset_clock:
                values["entered_at"] = now
            n = conn.execute(
                ro.update().where(ro.c.id == rollout_id, ro.c.gen == expected_gen).values(**values)
            ).rowcount
            if n != 1:
                return False
            conn.execute(
                ev.insert(),
                {
                    "rollout_id": rollout_id,
                    "pair": cur["pair"],
                    "gen": expected_gen + 1,
                    "from_state": cur["state"],
                    "to_state": new_state,
                    "from_weight": cur["weight"],
                    "to_weight": values.get("weight", cur["weight"]),
                    "action": action,
                    "reason": reason,
                    "actor": actor,
                    "at": now,
                },
            )
            ex = self.t.experiments
            if experiment is not None:
                conn.execute(ex.update().where(ex.c.rollout_id == rollout_id).values(**experiment))
            elif new_state not in ACTIVE_STATES:
                conn.execute(
                    ex.update()
                    .where(ex.c.rollout_id == rollout_id, ex.c.state.in_(("running", "promoting")))
                    .values(
                        state="promoted" if new_state == "production" else new_state,
                        stopped_at=now,
                        reason=reason,
                    )
                )
            return True

        try:
            ok = self._write(_do)
        except IntegrityError:
            ok = False
        return self.get_rollout(rollout_id) if ok else None

    def get_rollout(self, rollout_id: int) -> dict[str, Any] | None:
        ro = self.t.rollouts
        with self._read() as conn:
            m = conn.execute(sa.select(ro).where(ro.c.id == rollout_id)).mappings().first()
        return _row(m) if m is not None else None

    def active_rollouts(self) -> list[dict[str, Any]]:
        """Active (shadow/canary) rollouts, one per pair at most (the router's input)."""
        ro = self.t.rollouts
        with self._read() as conn:
            rows = conn.execute(sa.select(ro).where(ro.c.active == 1).order_by(ro.c.id)).mappings()
            return [_row(m) for m in rows]

    def rollouts(self, pair: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Most recent rollouts first."""
        ro = self.t.rollouts
        q = sa.select(ro).order_by(ro.c.id.desc()).limit(limit)
        if pair is not None:
            q = q.where(ro.c.pair == pair)
        with self._read() as conn:
            return [_row(m) for m in conn.execute(q).mappings()]

    def rollout_events(
        self, rollout_id: int | None = None, pair: str | None = None
    ) -> pd.DataFrame:
        ev = self.t.rollout_events
        q = sa.select(ev).order_by(ev.c.id)
        if rollout_id is not None:
            q = q.where(ev.c.rollout_id == rollout_id)
        if pair is not None:
            q = q.where(ev.c.pair == pair)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return _frame(rows, list(ev.c))

    # -- health -------------------------------------------------------------------------
    def report_rollout_health(
        self, worker: str, rows: list[tuple[int, str, int, int, float | None]]
    ) -> None:
        """Upsert this worker's cumulative (rollout_id, arm, requests, errors, p99_ms)."""
        if not rows:
            return
        h = self.t.rollout_health

        def _do(conn: Connection) -> None:
            now = utcnow()
            for rid, arm, req, err, p99 in rows:
                vals = {"requests": req, "errors": err, "p99_ms": p99, "updated_at": now}
                n = conn.execute(
                    h.update()
                    .where(h.c.rollout_id == rid, h.c.worker == worker, h.c.arm == arm)
                    .values(**vals)
                ).rowcount
                if n == 0:
                    conn.execute(
                        h.insert(), {"rollout_id": rid, "worker": worker, "arm": arm, **vals}
                    )

        with contextlib.suppress(IntegrityError):  # a concurrent first insert: next tick
            self._write(_do)

    def rollout_health(self, rollout_id: int) -> dict[str, dict[str, Any]]:
        """Per arm: requests, errors (summed over workers) and the worst worker's p99."""
        h = self.t.rollout_health
        with self._read() as conn:
            rows = conn.execute(sa.select(h).where(h.c.rollout_id == rollout_id)).mappings().all()
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            a = out.setdefault(r["arm"], {"requests": 0, "errors": 0, "p99_ms": None})
            a["requests"] += int(r["requests"])
            a["errors"] += int(r["errors"])
            if r["p99_ms"] is not None:
                a["p99_ms"] = max(a["p99_ms"] or 0.0, float(r["p99_ms"]))
        return out
