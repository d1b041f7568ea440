"""Promotion history: what was served when, and what a rollback restores."""

from __future__ import annotations

import getpass
import logging
import os
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


from bqx.state._base import StateBase, UTCDateTime, _frame, utcnow

log = logging.getLogger(__name__)

PROMOTION_ACTIONS: tuple[str, ...] = ("promote", "rollback", "approve", "reject")
PromotionAction = Literal["promote", "rollback", "approve", "reject"]


def current_actor() -> str:
    """Who is acting, for the promotion history when no API key is involved: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    promotions = sa.Table(
        f"{p}promotions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("from_version", sa.String(64)),
        sa.Column("to_version", sa.String(64)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.CheckConstraint(
            "action IN ('promote', 'rollback', 'approve', 'reject')",
            name=f"{p}ck_promotions_action",
        ),
        # ids are never reused on SQLite, so id order is history order
        sqlite_autoincrement=True,
    )
    sa.Index(f"{p}ix_promotions_pair", promotions.c.pair, promotions.c.id)
    return {"promotions": promotions}


class PromotionsMixin(StateBase):
    # -- promotion history --------------------------------------------------------------
    def record_promotion(
        self,
        pair: str,
        model_name: str,
        *,
        action: PromotionAction,
        to_version: str | int | None,
        from_version: str | int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        at: Any = None,
    ) -> int:
        """Append one event to the promotion history; returns its id.

        * ``promote``: ``to_version`` became production (``from_version``: the one it
          replaced, or None). ``to_version`` is required.
        * ``rollback``: production went from ``from_version`` back to ``to_version``
          (normally :meth:`previous_production`; None = no production version left).
        * ``approve``/``reject``: ``to_version`` is the version concerned; production is
          unchanged.

        ``actor`` defaults to the OS user (:func:`current_actor`); the API passes the key id.
        """
        if action not in PROMOTION_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(PROMOTION_ACTIONS)}")
        if action in ("promote", "approve", "reject") and to_version is None:
            raise ValueError(f"{action} needs to_version")
        row = {
            "pair": pair,
            "model_name": model_name,
            "from_version": None if from_version is None else str(from_version),
            "to_version": None if to_version is None else str(to_version),
            "action": action,
            "actor": actor or current_actor(),
            "reason": reason,
            "at": at if at is not None else utcnow(),
        }
        p = self.t.promotions
        return int(
            self._write(lambda conn: conn.execute(p.insert().returning(p.c.id), row).scalar_one())
        )

    def promotion_history(self, pair: str | None = None) -> pd.DataFrame:
        """Promotion events (oldest first) for ``pair`` or all pairs."""
        rows, cols = self._promotion_rows(pair)
        return _frame(rows, cols)

    def promotion_records(self, pair: str | None = None) -> list[dict[str, Any]]:
        """:meth:`promotion_history` as plain dicts (``at``: a UTC datetime), without
        importing pandas (``bqx models history``, issue 15)."""
        rows, cols = self._promotion_rows(pair)
        names = [str(c.key) for c in cols]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def _promotion_rows(self, pair: str | None) -> tuple[list[Any], list[Any]]:
        p = self.t.promotions
        cols = (
            "id",
            "pair",
            "model_name",
            "action",
            "from_version",
            "to_version",
            "actor",
            "reason",
            "at",
        )
        q = sa.select(*[p.c[c] for c in cols]).order_by(p.c.id)
        if pair is not None:
            q = q.where(p.c.pair == pair)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return list(rows), [p.c[c] for c in cols]

    def production_stack(self, pair: str) -> list[str]:
        """The production "undo stack" for ``pair``, oldest first; the last item is the
        current production version according to the history.

        Semantics (replayed from the history, in id order):

        * ``promote v``: push ``v`` (nothing happens if ``v`` is already on top);
        * ``rollback``: pop the top. So 1 -> 2 -> 3 then two rollbacks walk 3 -> 2 -> 1,
          never 3 -> 2 -> 3 (a rollback undoes the last change; it is not "swap with the
          one before"). If the recorded ``to_version`` disagrees with the new top (an
          explicit target or a history written by another tool), the record wins: the
          stack is cut back to the last occurrence of that version, or the version is
          pushed if it was never in production; ``to_version`` None empties the stack;
        * ``approve``/``reject``: no change.

        The registry's ``production`` alias is the authority on what is served; this
        history is the authority on what was served when, and what a rollback restores.
        """
        p = self.t.promotions
        q = (
            sa.select(p.c.action, p.c.to_version)
            .where(p.c.pair == pair, p.c.action.in_(("promote", "rollback")))
            .order_by(p.c.id)
        )
        with self._read() as conn:
            events = conn.execute(q).all()
        stack: list[str] = []
        for action, to in events:
            if action == "promote":
                if not stack or stack[-1] != to:
                    stack.append(to)
                continue
            if stack:
                stack.pop()
            if to is None:
                stack.clear()
            elif not stack or stack[-1] != to:
                if to in stack:
                    del stack[len(stack) - stack[::-1].index(to) :]
                else:
                    stack.append(to)
        return stack

    def current_production(self, pair: str) -> str | None:
        """The production version according to the history (None if none)."""
        stack = self.production_stack(pair)
        return stack[-1] if stack else None

    def previous_production(self, pair: str) -> str | None:
        """The version that was in production before the current one, i.e. what a
        rollback restores; None when there is nothing to roll back to. See
        :meth:`production_stack` for the exact semantics (repeated rollbacks walk back
        through history)."""
        stack = self.production_stack(pair)
        return stack[-2] if len(stack) >= 2 else None
