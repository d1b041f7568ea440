"""Paper trading: sessions, their trades (entry and exit fills) and equity marks.

Crash safety (``kill -9`` at any moment) rests on two transactions:

* :meth:`PaperMixin.paper_step` writes one bar's decisions for every pair of a session
  *and* advances the session's cursor in one transaction. Decision ids are deterministic
  (session, pair, bar), and rows that already exist are skipped, so re-running a bar after
  a crash writes nothing twice.
* :meth:`PaperMixin.paper_settle` replaces the session's open positions and appends the
  trades that closed since the last settlement, in one transaction. A closed trade is keyed
  by ``(session, pair, entry_ts)`` and is never rewritten: a re-settlement after a crash
  inserts only what is missing (no duplicate or lost fill).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bqx.state._base import StateBase, UTCDateTime, _frame, as_utc, utcnow
from bqx.state.decisions import _prepare_decision

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PAPER_STATUSES: tuple[str, ...] = (
    "created",
    "running",
    "stopping",
    "stopped",
    "finished",
    "failed",
)

#: Columns of a paper trade, as the backtest engine reports a trade (see
#: :func:`bqx.backtest.engine.run`), plus the session and whether it is still open.
TRADE_COLUMNS: tuple[str, ...] = (
    "pair",
    "side",
    "signal_ts",
    "entry_ts",
    "entry_mid",
    "entry_price",
    "exit_ts",
    "exit_mid",
    "exit_price",
    "exit_reason",
    "bars_held",
    "size",
    "leverage",
    "gross_pnl",
    "spread_cost",
    "slippage_cost",
    "commission",
    "net_pnl",
    "return",
)


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    sessions = sa.Table(
        f"{p}paper_sessions",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("pairs", sa.Text, nullable=False),  # comma-separated
        sa.Column("feed", sa.String(16), nullable=False),  # replay | push
        sa.Column("start_ts", UTCDateTime, nullable=False),
        sa.Column("end_ts", UTCDateTime),
        sa.Column("speed", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        # the last bar whose decisions are written; None before the first
        sa.Column("cursor_ts", UTCDateTime),
        sa.Column("settled_ts", UTCDateTime),
        sa.Column("equity", sa.Float),
        sa.Column("config", sa.JSON, nullable=False),  # backtest cost model, exits, sizing
        sa.Column("owner", sa.Text),  # host:pid of the runner
        sa.Column("heartbeat_at", UTCDateTime),
        sa.Column("message", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    trades = sa.Table(
        f"{p}paper_trades",
        md,
        sa.Column("session", sa.String(64), nullable=False),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("entry_ts", UTCDateTime, nullable=False),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("side", sa.Integer, nullable=False),
        sa.Column("signal_ts", UTCDateTime),
        sa.Column("entry_mid", sa.Float),
        sa.Column("entry_price", sa.Float),
        sa.Column("exit_ts", UTCDateTime),
        sa.Column("exit_mid", sa.Float),
        sa.Column("exit_price", sa.Float),
        sa.Column("exit_reason", sa.String(16)),
        sa.Column("bars_held", sa.Integer),
        sa.Column("size", sa.Float),
        sa.Column("leverage", sa.Float),
        sa.Column("gross_pnl", sa.Float),
        sa.Column("spread_cost", sa.Float),
        sa.Column("slippage_cost", sa.Float),
        sa.Column("commission", sa.Float),
        sa.Column("net_pnl", sa.Float),
        sa.Column("return", sa.Float),
        sa.PrimaryKeyConstraint("session", "pair", "entry_ts", name=f"{p}pk_paper_trades"),
    )
    equity = sa.Table(
        f"{p}paper_equity",
        md,
        sa.Column("session", sa.String(64), nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("equity", sa.Float, nullable=False),
        sa.Column("realized", sa.Float, nullable=False),
        sa.Column("open_positions", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("session", "ts", name=f"{p}pk_paper_equity"),
    )
    return {"paper_sessions": sessions, "paper_trades": trades, "paper_equity": equity}


class PaperMixin(StateBase):
    # -- sessions -------------------------------------------------------------------------
    def create_paper_session(self, row: Mapping[str, Any]) -> bool:
        """Insert a session; False (nothing written) when the name exists."""
        t = self.t.paper_sessions
        now = utcnow()
        values = {"status": "created", "created_at": now, "updated_at": now, **row}

        def _do(conn: Connection) -> bool:
            if conn.execute(sa.select(t.c.name).where(t.c.name == values["name"])).first():
                return False
            conn.execute(t.insert(), values)
            return True

        return self._write(_do)

    def get_paper_session(self, name: str) -> dict[str, Any] | None:
        t = self.t.paper_sessions
        with self._read() as conn:
            r = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
        return dict(r) if r is not None else None

    def list_paper_sessions(self) -> list[dict[str, Any]]:
        t = self.t.paper_sessions
        with self._read() as conn:
            return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.created_at)).mappings()]

    def update_paper_session(self, name: str, **values: Any) -> int:
        """Set columns of a session (``status``, ``owner``, ``heartbeat_at``, ``message``)."""
        t = self.t.paper_sessions
        stmt = t.update().where(t.c.name == name).values(updated_at=utcnow(), **values)
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))

    def claim_paper_session(self, name: str, owner: str, *, stale_s: float) -> str | None:
        """Make ``owner`` the runner of session ``name`` unless another live runner holds it
        (heartbeat younger than ``stale_s``). Returns None on success, else the holder."""
        t = self.t.paper_sessions

        def _do(conn: Connection) -> str | None:
            r = conn.execute(
                sa.select(t.c.owner, t.c.heartbeat_at, t.c.status).where(t.c.name == name)
            ).first()
            if r is None:
                return None
            holder, beat, status = r
            now = utcnow()
            if (
                holder
                and holder != owner
                and status in ("running", "stopping")
                and beat is not None
                and (now - as_utc(beat)).total_seconds() < stale_s
            ):
                return str(holder)
            conn.execute(
                t.update()
                .where(t.c.name == name)
                .values(owner=owner, heartbeat_at=now, status="running", updated_at=now)
            )
            return None

        return self._write(_do)

    # -- one bar ---------------------------------------------------------------------------
    def paper_step(self, name: str, decisions: Iterable[Mapping[str, Any]], cursor_ts: Any) -> int:
        """Write one bar's decisions (skipping ids that exist) and move the cursor, atomically.
        Returns how many decisions were new."""
        rows = [_prepare_decision(r) for r in decisions]
        d = self.t.decisions
        t = self.t.paper_sessions
        cursor = as_utc(cursor_ts)

        def _do(conn: Connection) -> int:
            new = rows
            if rows:
                ids = [r["decision_id"] for r in rows]
                have = {
                    x
                    for (x,) in conn.execute(
                        sa.select(d.c.decision_id).where(d.c.decision_id.in_(ids))
                    )
                }
                new = [r for r in rows if r["decision_id"] not in have]
                if new:
                    conn.execute(d.insert(), new)
            now = utcnow()
            conn.execute(
                t.update()
                .where(t.c.name == name)
                .values(cursor_ts=cursor, heartbeat_at=now, updated_at=now)
            )
            return len(new)

        return self._write(_do)

    # -- settlement ------------------------------------------------------------------------
    def paper_settle(
        self,
        name: str,
        closed: Iterable[Mapping[str, Any]],
        open_: Iterable[Mapping[str, Any]],
        *,
        settled_ts: Any,
        equity: float,
        realized: float,
    ) -> int:
        """Append newly closed trades (existing keys are kept as they are), replace the open
        positions, record the equity mark; one transaction. Returns trades appended."""
        tr = self.t.paper_trades
        eq = self.t.paper_equity
        t = self.t.paper_sessions
        closed_rows = [_trade_row(name, r, False) for r in closed]
        open_rows = [_trade_row(name, r, True) for r in open_]
        when = as_utc(settled_ts)

        def _do(conn: Connection) -> int:
            conn.execute(tr.delete().where(tr.c.session == name, tr.c.is_open.is_(True)))
            have = {
                (p, as_utc(ts))
                for p, ts in conn.execute(
                    sa.select(tr.c.pair, tr.c.entry_ts).where(tr.c.session == name)
                )
            }
            new = [r for r in closed_rows if (r["pair"], r["entry_ts"]) not in have]
            if new:
                conn.execute(tr.insert(), new)
            if open_rows:
                conn.execute(tr.insert(), open_rows)
            conn.execute(eq.delete().where(eq.c.session == name, eq.c.ts == when))
            conn.execute(
                eq.insert(),
                {
                    "session": name,
                    "ts": when,
                    "equity": float(equity),
                    "realized": float(realized),
                    "open_positions": len(open_rows),
                },
            )
            conn.execute(
                t.update()
                .where(t.c.name == name)
                .values(settled_ts=when, equity=float(equity), updated_at=utcnow())
            )
            return len(new)

        return self._write(_do)

    def read_paper_trades(self, name: str, *, open_only: bool | None = None) -> pd.DataFrame:
        """The session's trades (closed and open), by entry time then pair."""
        tr = self.t.paper_trades
        cols = [tr.c.is_open, *[tr.c[c] for c in TRADE_COLUMNS]]
        q = sa.select(*cols).where(tr.c.session == name).order_by(tr.c.entry_ts, tr.c.pair)
        if open_only is not None:
            q = q.where(tr.c.is_open.is_(open_only))
        with self._read() as conn:
            rows = conn.execute(q).all()
        return _frame(rows, cols)

    def read_paper_equity(self, name: str) -> pd.DataFrame:
        eq = self.t.paper_equity
        cols = [eq.c.ts, eq.c.equity, eq.c.realized, eq.c.open_positions]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*cols).where(eq.c.session == name).order_by(eq.c.ts)
            ).all()
        return _frame(rows, cols)

    def delete_paper_session(self, name: str) -> None:
        """Remove a session with its trades and equity marks (its decisions stay logged)."""

        def _do(conn: Connection) -> None:
            for tab in (self.t.paper_trades, self.t.paper_equity):
                conn.execute(tab.delete().where(tab.c.session == name))
            conn.execute(self.t.paper_sessions.delete().where(self.t.paper_sessions.c.name == name))

        self._write(_do)


def _trade_row(session: str, r: Mapping[str, Any], is_open: bool) -> dict[str, Any]:
    import math

    out: dict[str, Any] = {"session": session, "is_open": is_open}
    for c in TRADE_COLUMNS:
        v = r.get(c)
        if c in ("signal_ts", "entry_ts", "exit_ts"):
            out[c] = None if v is None or v != v else as_utc(v)
        elif c in ("side", "bars_held"):
            out[c] = None if v is None else int(v)
        elif c in ("pair", "exit_reason"):
            out[c] = None if v is None else str(v)
        else:
            fv = None if v is None else float(v)
            out[c] = fv if fv is not None and math.isfinite(fv) else None
    return out
