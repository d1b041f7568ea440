"""A/B experiments: one row per experiment, linked to the rollout that routes its traffic
(kind ``experiment``: arm A = baseline, arm B = candidate). Rollout transitions update the
linked row in the same transaction (see :meth:`RolloutsMixin.transition_rollout`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bqx.state._base import StateBase, UTCDateTime


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    experiments = sa.Table(
        f"{p}experiments",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("a_version", sa.String(64), nullable=False),
        sa.Column("b_version", sa.String(64), nullable=False),
        sa.Column("split", sa.Float, nullable=False),
        sa.Column("min_samples", sa.Integer, nullable=False),
        sa.Column("min_days", sa.Float, nullable=False),
        sa.Column("rollout_id", sa.Integer, nullable=False),
        # running -> promoting -> promoted, or stopped / decided / rolled_back / aborted
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("stopped_at", UTCDateTime),
        sa.Column("winner", sa.String(8)),
        sa.Column("analysis", sa.JSON),
        sa.Column("reason", sa.Text),
        sqlite_autoincrement=True,
    )
    return {"experiments": experiments}


class ExperimentsMixin(StateBase):
    # -- experiments --------------------------------------------------------------------
    def experiments(
        self, pair: str | None = None, experiment_id: int | None = None
    ) -> list[dict[str, Any]]:
        ex = self.t.experiments
        q = sa.select(ex).order_by(ex.c.id.desc())
        if pair is not None:
            q = q.where(ex.c.pair == pair)
        if experiment_id is not None:
            q = q.where(ex.c.id == experiment_id)
        with self._read() as conn:
            return [dict(m) for m in conn.execute(q).mappings()]

    def update_experiment(self, experiment_id: int, **values: Any) -> None:
        ex = self.t.experiments
        self._write(
            lambda conn: conn.execute(ex.update().where(ex.c.id == experiment_id).values(**values))
        )
