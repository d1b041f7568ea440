"""Paper trading through the live code path, with trades identical to a backtest.

``bqx paper start --name N --pairs ... --feed replay --start T0 --end T1`` replays stored
bars through the *serving* path (the API's in-memory bar cache refreshed bar by bar, online
features, the production model, signals), logs every decision, and keeps a paper account in
the state database. ``--feed push`` follows bars as they arrive in the store (POST /v1/bars
to a running ``bqx serve``, or any ingestion).

The paper broker is the backtest engine itself (:func:`bqx.backtest.engine.run`) applied to
the decisions logged so far. Why not a second, incremental execution engine: parity with the
backtest is the point of paper trading, and two implementations of fills, costs and exits
drift apart (the most common complaint about open trading tools). The engine is causal by
construction - a signal at bar t fills at the open of t+1, exits look only at bars after the
entry, sizing uses only trades closed before the entry - so its trades on the bars up to
``now`` are exactly the trades a live broker would have filled by ``now``. Trades that the
engine closes at "end of data" are the open positions. See :mod:`bqx.paper.session`.
"""

from bqx.paper.session import (
    PaperError,
    PaperSession,
    PaperSessionExists,
    compare_session,
    compare_version_backtest,
    create_session,
    session_signals,
)

__all__ = [
    "PaperError",
    "PaperSession",
    "PaperSessionExists",
    "compare_session",
    "compare_version_backtest",
    "create_session",
    "session_signals",
]
