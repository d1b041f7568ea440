"""Operator coordination: leases (leader election), the trigger ledger and task clocks.

* ``leases``: one row per lease name. A process holds it while ``expires_at`` is in the
  future; renewing and taking over are compare-and-set updates (``WHERE holder = ? AND
  token = ?``), so two processes racing for an expired lease cannot both win, on SQLite or
  PostgreSQL. ``token`` grows by one on every change of holder (a fencing token: work done
  under an old token can be recognised). Clocks: expiry uses each host's UTC clock, so
  hosts must be NTP-synchronised to well under the TTL.
* ``ops_triggers``: every retraining trigger, keyed by a unique ``trigger_key`` (e.g.
  ``schedule:EURUSD:2026-11`` or ``alert:17``). Inserting an existing key is a no-op, and a
  trigger moves pending -> running -> done/failed exactly once (CAS on the status), so a
  restarted or failed-over operator never retrains twice for one trigger: a trigger found
  ``running`` after a crash is marked ``interrupted``, not rerun.
* ``ops_tasks``: when each periodic task last ran, so a new leader keeps the schedule.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bqx.state._base import StateBase, UTCDateTime, _frame, as_utc, utcnow

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TRIGGER_KINDS: tuple[str, ...] = ("drift", "quality", "schedule", "manual", "online")
TRIGGER_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "interrupted")


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    leases = sa.Table(
        f"{p}leases",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("renewed_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    triggers = sa.Table(
        f"{p}ops_triggers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger_key", sa.String(200), nullable=False, unique=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("holder", sa.Text),
        sa.Column("parent_version", sa.String(64)),
        sa.Column("version", sa.String(64)),
        sa.Column("data_start", UTCDateTime),
        sa.Column("data_end", UTCDateTime),
        sa.Column("detail", sa.JSON),
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_ops_triggers_status", triggers.c.status, triggers.c.id)
    tasks = sa.Table(
        f"{p}ops_tasks",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_run_at", UTCDateTime, nullable=False),
        sa.Column("detail", sa.JSON),
    )
    return {"leases": leases, "ops_triggers": triggers, "ops_tasks": tasks}


class LeasesMixin(StateBase):
    # -- leases -------------------------------------------------------------------------
    def try_acquire_lease(self, name: str, holder: str, ttl_s: float) -> int | None:
        """Take or renew lease ``name`` for ``holder`` for ``ttl_s`` seconds.

        Returns the fencing token when ``holder`` holds the lease afterwards, None when
        another live holder has it. One transaction; a compare-and-set update, so racing
        processes cannot both win an expired lease.
        """
        le = self.t.leases

        def _do(conn: Connection) -> int | None:
            now = utcnow()
            exp = now + timedelta(seconds=ttl_s)
            row = conn.execute(
                sa.select(le.c.holder, le.c.token, le.c.expires_at).where(le.c.name == name)
            ).first()
            if row is None:
                conn.execute(
                    le.insert(),
                    {
                        "name": name,
                        "holder": holder,
                        "token": 1,
                        "acquired_at": now,
                        "renewed_at": now,
                        "expires_at": exp,
                    },
                )
                return 1
            cur_holder, token, expires = row[0], int(row[1]), as_utc(row[2])
            if cur_holder == holder:
                values: dict[str, Any] = {"renewed_at": now, "expires_at": exp}
                new_token = token
            elif expires <= now:
                new_token = token + 1
                values = {
                    "holder": holder,
                    "token": new_token,
                    "acquired_at": now,
                    "renewed_at": now,
                    "expires_at": exp,
                }
            else:
                return None
            n = conn.execute(
                le.update()
                .where(le.c.name == name, le.c.holder == cur_holder, le.c.token == token)
                .values(**values)
            ).rowcount
            return new_token if n == 1 else None

        try:
            return self._write(_do)
        except IntegrityError:  # another process inserted the row first
            return None

    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up at once (graceful shutdown): expire it if ``holder`` has it."""
        le = self.t.leases
        stmt = (
            le.update()
            .where(le.c.name == name, le.c.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        return bool(self._write(lambda conn: conn.execute(stmt).rowcount))

    def lease_info(self, name: str) -> dict[str, Any] | None:
        """The lease row (holder, token, times, ``live``) or None if never taken."""
        le = self.t.leases
        with self._read() as conn:
            row = conn.execute(sa.select(le).where(le.c.name == name)).mappings().first()
        if row is None:
            return None
        d = dict(row)
        d["live"] = as_utc(d["expires_at"]) > utcnow()
        return d

    # -- triggers -----------------------------------------------------------------------
    def add_trigger(
        self,
        key: str,
        pair: str,
        kind: str,
        *,
        reason: str | None = None,
        parent_version: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> tuple[int, bool]:
        """Record a trigger once: returns (id, created). An existing key is left as is."""
        if kind not in TRIGGER_KINDS:
            raise ValueError(f"trigger kind must be one of {', '.join(TRIGGER_KINDS)}")
        tr = self.t.ops_triggers

        def _do(conn: Connection) -> tuple[int, bool]:
            row = conn.execute(sa.select(tr.c.id).where(tr.c.trigger_key == key)).first()
            if row is not None:
                return int(row[0]), False
            new_id = conn.execute(
                tr.insert().returning(tr.c.id),
                {
                    "trigger_key": key,
                    "pair": pair,
                    "kind": kind,
                    "status": "pending",
                    "reason": reason,
                    "created_at": utcnow(),
                    "parent_version": parent_version,
                    "detail": detail,
                },
            ).scalar_one()
            return int(new_id), True

        try:
            return self._write(_do)
        except IntegrityError:
            return self._write(_do)

    def claim_trigger(self, trigger_id: int, holder: str) -> bool:
        """pending -> running (CAS): True for exactly one caller."""
        tr = self.t.ops_triggers
        stmt = (
            tr.update()
            .where(tr.c.id == trigger_id, tr.c.status == "pending")
            .values(status="running", started_at=utcnow(), holder=holder)
        )
        return bool(self._write(lambda conn: conn.execute(stmt).rowcount))

    def finish_trigger(
        self,
        trigger_id: int,
        status: str,
        *,
        version: str | None = None,
        parent_version: str | None = None,
        data_start: Any = None,
        data_end: Any = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """running -> done/failed/interrupted (CAS on running)."""
        if status not in ("done", "failed", "interrupted"):
            raise ValueError("status must be done, failed or interrupted")
        tr = self.t.ops_triggers
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        for k, v in (
            ("version", version),
            ("parent_version", parent_version),
            ("data_start", data_start),
            ("data_end", data_end),
            ("detail", detail),
        ):
            if v is not None:
                values[k] = v
        stmt = tr.update().where(tr.c.id == trigger_id, tr.c.status == "running").values(**values)
        return bool(self._write(lambda conn: conn.execute(stmt).rowcount))

    def update_trigger_detail(self, trigger_id: int, detail: dict[str, Any]) -> None:
        """Replace a trigger's detail (follow-up results: gate report, rollout)."""
        tr = self.t.ops_triggers
        stmt = tr.update().where(tr.c.id == trigger_id).values(detail=detail)
        self._write(lambda conn: conn.execute(stmt))

    def interrupt_stale_triggers(self, holder: str) -> list[int]:
        """Triggers left ``running`` by another (dead) holder -> ``interrupted`` (never rerun:
        a half-done retrain may have registered a version; an operator looks at it)."""
        tr = self.t.ops_triggers

        def _do(conn: Connection) -> list[int]:
            ids = [
                int(r[0])
                for r in conn.execute(
                    sa.select(tr.c.id).where(tr.c.status == "running", tr.c.holder != holder)
                ).all()
            ]
            if ids:
                conn.execute(
                    tr.update()
                    .where(tr.c.id.in_(ids), tr.c.status == "running")
                    .values(status="interrupted", finished_at=utcnow())
                )
            return ids

        return self._write(_do)

    def triggers(self, *, status: str | None = None, pair: str | None = None) -> pd.DataFrame:
        """The trigger ledger (oldest first)."""
        tr = self.t.ops_triggers
        q = sa.select(tr).order_by(tr.c.id)
        if status is not None:
            q = q.where(tr.c.status == status)
        if pair is not None:
            q = q.where(tr.c.pair == pair)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return _frame(rows, list(tr.c))

    def get_trigger(self, trigger_id: int) -> dict[str, Any] | None:
        tr = self.t.ops_triggers
        with self._read() as conn:
            row = conn.execute(sa.select(tr).where(tr.c.id == trigger_id)).mappings().first()
        return dict(row) if row is not None else None

    # -- task clocks --------------------------------------------------------------------
    def task_last_run(self, name: str) -> Any:
        """When task ``name`` last ran (tz-aware UTC) or None."""
        tk = self.t.ops_tasks
        with self._read() as conn:
            v = conn.execute(sa.select(tk.c.last_run_at).where(tk.c.name == name)).scalar()
        return as_utc(v) if v is not None else None

    def mark_task_run(self, name: str, detail: dict[str, Any] | None = None) -> None:
        tk = self.t.ops_tasks

        def _do(conn: Connection) -> None:
            now = utcnow()
            n = conn.execute(
                tk.update().where(tk.c.name == name).values(last_run_at=now, detail=detail)
            ).rowcount
            if n == 0:
                conn.execute(tk.insert(), {"name": name, "last_run_at": now, "detail": detail})

        self._write(_do)

    def task_clocks(self) -> list[dict[str, Any]]:
        tk = self.t.ops_tasks
        with self._read() as conn:
            return [dict(r) for r in conn.execute(sa.select(tk).order_by(tk.c.name)).mappings()]
