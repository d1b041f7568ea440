"""Maturation: fill ``decisions.realized_target`` once the target of a decision is known.

The target is computed by :func:`bqx.features.target_series` - the one definition training
uses (the feature store computes it with the same ``_target`` on the same panel) - and is
stored rounded through float32 exactly like the feature store, so a matured decision equals
the training target bit for bit.

A decision is *mature* when the bar grid reaches ``asof_ts + horizon`` bars. If the target is
still NaN then (a data gap, exactly as in training) it is stored as NaN/NULL with
``realized_at`` set, so it is never retried: the pass is incremental (only rows with
``realized_at IS NULL`` are read) and idempotent (a second pass updates nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from bqx.errors import NoDataError
from bqx.features import target_series
from bqx.features.pipeline import as_panel

if TYPE_CHECKING:
    from bqx.config import Settings
    from bqx.data.store import BarStore
    from bqx.state import StateDB

#: Bars of history read before the earliest pending decision (covers the fill policy).
_HISTORY = timedelta(days=1)
#: Slack after ``asof + horizon`` (weekends: the trading-time grid skips them).
_SLACK = timedelta(days=4)


@dataclass
class MatureReport:
    """What one maturation pass did (counts of decisions)."""

    pending: int = 0  # decisions without realized_at when the pass started
    matured: int = 0  # realized_target set (finite)
    matured_nan: int = 0  # horizon passed but target NaN (gap, as in training)
    waiting: int = 0  # horizon not reached yet
    skipped: int = 0  # no asof_ts / unusable row
    per_pair: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "matured": self.matured,
            "matured_nan": self.matured_nan,
            "waiting": self.waiting,
            "skipped": self.skipped,
            "per_pair": dict(self.per_pair),
        }


def pending_decisions(state: StateDB, pairs: list[str] | None = None) -> pd.DataFrame:
    """Decisions not yet matured (``realized_at IS NULL``): id, pair, asof_ts, horizon."""
    d = state.t.decisions
    q = sa.select(d.c.decision_id, d.c.pair, d.c.asof_ts, d.c.horizon).where(
        d.c.realized_at.is_(None)
    )
    if pairs:
        q = q.where(d.c.pair.in_(pairs))
    with state._read() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=["decision_id", "pair", "asof_ts", "horizon"])
    if len(df):
        df["asof_ts"] = pd.to_datetime(df["asof_ts"], utc=True)
    return df


def mature(
    state: StateDB,
    bars: BarStore,
    settings: Settings,
    *,
    pairs: list[str] | None = None,
    now: Any = None,
) -> MatureReport:
    """Fill realised targets of every decision whose horizon has passed.

    ``bars``: the bar store the service reads. ``now`` stamps ``realized_at`` (default: now).
    Returns counts; safe to call as often as wanted (incremental, idempotent).
    """
    rep = MatureReport()
    pend = pending_decisions(state, pairs)
    rep.pending = len(pend)
    if not len(pend):
        return rep
    ok = pend["asof_ts"].notna()
    rep.skipped = int((~ok).sum())
    pend = pend[ok].copy()
    if not len(pend):
        return rep
    pend["horizon"] = pend["horizon"].fillna(settings.horizon).astype(int)
    interval = settings.interval
    start = pend["asof_ts"].min() - _HISTORY
    end = pend["asof_ts"].max() + interval * int(pend["horizon"].max()) + _SLACK
    # all pairs, like the feature store: the grid is the union of every pair's timestamps
    raw = bars.read(None, start, end)
    if not len(raw):
        rep.waiting = len(pend)
        return rep
    try:
        panel = as_panel(raw, interval, settings.max_ffill_bars)
    except NoDataError:
        rep.waiting = len(pend)
        return rep
    n_grid = len(panel.ts)
    values: list[tuple[str, float]] = []
    for key, grp in pend.groupby(["pair", "horizon"], sort=True):
        pair, h = str(key[0]), int(key[1])  # type: ignore[call-overload]
        if pair not in panel.pairs:
            rep.waiting += len(grp)
            continue
        y = target_series(
            panel, pair, horizon=h, target=settings.target, max_ffill=settings.max_ffill_bars
        )
        # the feature store keeps targets as float32; training reads them back from there
        y32 = y.to_numpy().astype(np.float32).astype(np.float64)
        asof = grp["asof_ts"].dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view("i8")
        pos_grid = np.searchsorted(panel.ts, asof)
        on_grid = (pos_grid < n_grid) & (panel.ts[np.minimum(pos_grid, n_grid - 1)] == asof)
        reached = on_grid & (pos_grid + h < n_grid)
        yi = pd.DatetimeIndex(y.index).asi8
        k = np.searchsorted(yi, asof)
        has_row = (k < len(yi)) & (yi[np.minimum(k, max(len(yi) - 1, 0))] == asof)
        n_done = 0
        for did, r, hr, kk in zip(grp["decision_id"], reached, has_row, k, strict=True):
            if not r:
                rep.waiting += 1
                continue
            v = float(y32[kk]) if hr else math.nan
            values.append((str(did), v))
            if math.isfinite(v):
                rep.matured += 1
            else:
                rep.matured_nan += 1
            n_done += 1
        if n_done:
            rep.per_pair[pair] = rep.per_pair.get(pair, 0) + n_done
    for i in range(0, len(values), 5000):
        state.set_realized(values[i : i + 5000], at=now)
    return rep
