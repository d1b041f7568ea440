"""Matured outcomes: fill ``decisions.realized_target`` once a decision's target is known.

One definition of the target: :func:`bqx.features.pipeline.target_series`, the very
function training labels come from, on the same trading-time grid (forward-fill limit
and gap handling included). A decision whose horizon runs past the data, or across a gap
that training treats as NaN, stays unmatured (NULL) and is retried on the next pass -
so the step is incremental (only pending rows are read) and idempotent (a second run finds
nothing new to write and changes nothing).

A target that training would drop (its horizon crosses a data gap) never becomes known:
once the pair's own data runs :data:`EXPIRE` past the decision (measured on the bars, not
the wall clock, so a stalled feed expires nothing), the decision is closed as *unknowable*
(``realized_at`` set, ``realized_target`` NULL) and not read again. Without that, one gap
would keep its decisions pending for ever and every pass would read the bars from two days
before the oldest of them - a read that grows with the service's age.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: How far past a decision's as-of bar the pair's data must run before a still-unknown target
#: is final. Generous on purpose: a 60-bar horizon that starts before a weekend ends ~2.1 days
#: later in calendar time, and a holiday can add a day; a bar feed's late corrections arrive
#: long before a week is over.
EXPIRE = pd.Timedelta(days=7)


@dataclass(frozen=True)
class MatureResult:
    """How many pending decisions were looked at, matured, closed as unknowable (their
    horizon crossed a gap: :data:`EXPIRE`), and still wait per pair."""

    pending: int
    matured: int
    waiting: dict[str, int]
    unknowable: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "matured": self.matured,
            "unknowable": self.unknowable,
            "waiting": self.waiting,
        }


def mature_frame(
    decisions: pd.DataFrame,
    bars: pd.DataFrame,
    *,
    target: str = "bqx",
    max_ffill: int = 5,
) -> pd.Series:
    """Realised targets for ``decisions`` (index: decision_id; NaN = not yet known).

    ``decisions`` needs columns decision_id, pair, asof_ts, horizon; ``bars`` is the long
    bar frame (pair, ts, ...). Pure function: no database.
    """
    ids = decisions["decision_id"].astype(str).to_numpy()
    vals = np.full(len(decisions), np.nan)
    if decisions.empty or bars.empty:
        return pd.Series(vals, index=ids, dtype=float)
    # imported here: the feature pipeline (scipy.signal, ~1 s) is needed only when
    # something matures, not by a pass that finds nothing pending
    from bqx.features.pipeline import target_series

    asof_all = pd.DatetimeIndex(pd.to_datetime(decisions["asof_ts"], utc=True))
    groups = decisions.groupby(["pair", "horizon"], sort=False).indices  # -> row positions
    for key, pos in groups.items():
        pair, horizon = cast(tuple[Any, Any], key)
        pb = bars[bars["pair"] == pair]
        if pb.empty:
            continue
        y = target_series(
            pb, str(pair), horizon=int(str(horizon)), target=target, max_ffill=max_ffill
        )
        vals[pos] = y.reindex(asof_all[pos]).to_numpy()
    return pd.Series(vals, index=ids, dtype=float)


def mature(
    state: Any,
    store: Any,
    *,
    pairs: list[str] | None = None,
    target: str = "bqx",
    max_ffill: int = 5,
    at: Any = None,
    limit: int = 1_000_000,
) -> MatureResult:
    """Fill ``realized_target`` for every pending decision whose target is now known.

    ``state`` is a :class:`bqx.state.StateDB`, ``store`` a bar store with
    ``read(pairs=..., start=..., end=...)`` returning the long bar frame. Only decisions
    with an ``asof_ts`` and a ``horizon`` that are still pending (no realised target and
    not closed as unknowable) are read; one whose target is still unknown when the pair's
    data runs :data:`EXPIRE` past it is closed as unknowable.
    """
    d = state.t.decisions
    import sqlalchemy as sa

    q = (
        # asof_ts raw (SQLite: text), converted in bulk below
        sa.select(d.c.decision_id, d.c.pair, sa.type_coerce(d.c.asof_ts, sa.String), d.c.horizon)
        .where(
            d.c.realized_target.is_(None),
            d.c.realized_at.is_(None),  # set with a NULL target: closed as unknowable
            d.c.asof_ts.is_not(None),
            d.c.horizon.is_not(None),
        )
        .limit(limit)
    )
    if pairs:
        q = q.where(d.c.pair.in_(list(pairs)))
    with state._read() as conn:
        rows = conn.execute(q).all()
    if not rows:
        return MatureResult(0, 0, {})
    ids, prs, ts, hz = (list(c) for c in zip(*rows, strict=True))
    df = pd.DataFrame(
        {
            "decision_id": ids,
            "pair": prs,
            "asof_ts": pd.to_datetime(ts, utc=True, format="ISO8601"),  # datetime or text
            "horizon": hz,
        }
    )
    need = sorted(df["pair"].unique())
    start = df["asof_ts"].min() - pd.Timedelta(days=2)  # history for the target's grid
    bars = store.read(pairs=need, start=start)
    vals = mature_frame(df, bars, target=target, max_ffill=max_ffill)
    known = np.isfinite(vals.to_numpy())  # positions of df's rows (mature_frame keeps order)
    ok = vals[known]
    n = (
        state.set_realized(zip(ok.index, ok.to_numpy().tolist(), strict=True), at=at)
        if len(ok)
        else 0
    )
    # unknown targets whose pair's data already runs EXPIRE past them: final (a gap)
    last = bars.groupby("pair")["ts"].max() if len(bars) else pd.Series(dtype=object)
    last_of = pd.DatetimeIndex(pd.to_datetime(df["pair"].map(last), utc=True))
    final = ~known & np.asarray(last_of >= pd.DatetimeIndex(df["asof_ts"]) + EXPIRE, bool)
    gone = (
        state.set_realized(((i, None) for i in df.loc[final, "decision_id"]), at=at)
        if final.any()
        else 0
    )
    waiting = df.loc[~known & ~final, "pair"].value_counts()
    return MatureResult(
        len(df), int(n), {str(k): int(v) for k, v in waiting.items()}, unknowable=int(gone)
    )
