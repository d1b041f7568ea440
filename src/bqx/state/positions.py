"""Portfolio state for the risk manager: cash, today's realised P&L and open positions.

Why in the state DB: positions are written by the trader (``POST /v1/positions``), later by
the paper trader, and read by every API worker's risk check, concurrently. Quantities are
signed base-currency units (+ long, - short); prices are quote per base; cash and P&L are in
the account currency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bqx.errors import BqxError
from bqx.state._base import StateBase, UTCDateTime, utcnow


class PortfolioInputError(BqxError, ValueError):
    """A portfolio update with a non-finite or malformed value (nothing is written)."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class Portfolio:
    """One consistent read of the portfolio."""

    cash: float
    realized_pnl_today: float
    pnl_date: date | None
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)  # pair -> (q, avg)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cash": self.cash,
            "realized_pnl_today": self.realized_pnl_today,
            "pnl_date": self.pnl_date.isoformat() if self.pnl_date else None,
            "positions": [
                {"pair": p, "quantity": q, "avg_price": a}
                for p, (q, a) in sorted(self.positions.items())
            ],
        }


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    positions = sa.Table(
        f"{p}positions",
        md,
        sa.Column("pair", sa.String(16), primary_key=True),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("avg_price", sa.Float, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    account = sa.Table(
        f"{p}account",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cash", sa.Float, nullable=False),
        sa.Column("realized_pnl_today", sa.Float, nullable=False),
        sa.Column("pnl_date", sa.Date),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    return {"positions": positions, "account": account}


def _finite(name: str, v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise PortfolioInputError(f"{name} must be a number, got {v!r}", name) from None
    if not math.isfinite(x):
        raise PortfolioInputError(f"{name} must be finite, got {v!r}; nothing written", name)
    return x


class PositionsMixin(StateBase):
    def read_portfolio(self, default_cash: float = 0.0) -> Portfolio:
        """Cash (``default_cash`` until first set), today's realised P&L, positions."""
        t = self.t
        with self._read() as conn:
            acc = conn.execute(sa.select(t.account).where(t.account.c.id == 1)).first()
            rows = conn.execute(sa.select(t.positions)).all()
        pos = {r.pair: (float(r.quantity), float(r.avg_price)) for r in rows if r.quantity != 0}
        if acc is None:
            return Portfolio(float(default_cash), 0.0, None, pos)
        today = utcnow().date()
        rp = float(acc.realized_pnl_today) if acc.pnl_date == today else 0.0
        return Portfolio(float(acc.cash), rp, acc.pnl_date, pos)

    def update_portfolio(
        self,
        *,
        cash: float | None = None,
        realized_pnl_today: float | None = None,
        positions: list[dict[str, Any]] | None = None,
        default_cash: float = 0.0,
    ) -> Portfolio:
        """Set cash / today's realised P&L / positions (each given pair's quantity and
        average price; quantity 0 closes it) in ONE transaction. Every value is validated
        before anything is written (:class:`PortfolioInputError` names the field)."""
        from bqx.universe import normalize_pair

        c = _finite("cash", cash) if cash is not None else None
        r = (
            _finite("realized_pnl_today", realized_pnl_today)
            if realized_pnl_today is not None
            else None
        )
        rows = []
        for i, item in enumerate(positions or []):
            pair = normalize_pair(item.get("pair", ""))
            q = _finite(f"positions[{i}].quantity", item.get("quantity"))
            a = _finite(f"positions[{i}].avg_price", item.get("avg_price", 0.0))
            if q != 0 and a <= 0:
                raise PortfolioInputError(
                    f"positions[{i}].avg_price must be positive for an open position",
                    f"positions[{i}].avg_price",
                )
            rows.append((pair, q, a))
        now = utcnow()
        t = self.t

        def _do(conn: Connection) -> None:
            acc = conn.execute(sa.select(t.account).where(t.account.c.id == 1)).first()
            vals: dict[str, Any] = {"updated_at": now}
            if c is not None:
                vals["cash"] = c
            if r is not None:
                vals["realized_pnl_today"] = r
                vals["pnl_date"] = now.date()
            if acc is None:
                conn.execute(
                    t.account.insert(),
                    {
                        "id": 1,
                        "cash": c if c is not None else float(default_cash),
                        "realized_pnl_today": r or 0.0,
                        "pnl_date": now.date(),
                        "updated_at": now,
                    },
                )
            else:
                conn.execute(t.account.update().where(t.account.c.id == 1).values(**vals))
            for pair, q, a in rows:
                conn.execute(t.positions.delete().where(t.positions.c.pair == pair))
                if q != 0:
                    conn.execute(
                        t.positions.insert(),
                        {"pair": pair, "quantity": q, "avg_price": a, "updated_at": now},
                    )

        self._write(_do)
        return self.read_portfolio(default_cash)
