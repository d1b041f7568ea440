"""Online learning: small, gated updates of a pair's production version on its most recent
matured bars (issue 17 item 3).

* :mod:`bqx.online.update` — the update of one fitted pipeline (ridge: recursive least
  squares with forgetting, re-centred on the parent; LightGBM: a few boosting rounds on the
  window or a refit of the leaf values with decay; other kinds: not supported);
* :mod:`bqx.online.job` — one update end to end: rows, update, recalibration, registration
  (parent and data window recorded), the stability check against the parent, the rejection
  streak and pause, then the operator's own gate and rollout (shadow first);
* state: :mod:`bqx.state.online` (enabled / paused / streak / last update per pair).

The operator runs the ``online`` job every ``online.every_h`` hours (0 = off, the default)
for pairs enabled with ``bqx online enable --pairs ...``.
"""

from bqx.online.job import OnlineCandidate, build_update, run_online_trigger, submit_update
from bqx.online.update import SUPPORTED, OnlineUnsupported, update_pipeline

__all__ = [
    "SUPPORTED",
    "OnlineCandidate",
    "OnlineUnsupported",
    "build_update",
    "run_online_trigger",
    "submit_update",
    "update_pipeline",
]
