"""Safe rollouts of new model versions: shadow -> canary steps -> production, automatic
rollback, and A/B experiments (Argo Rollouts / Flagger for forecasting models whose
quality is known only ``horizon`` bars later).

* :mod:`bqx.rollout.routing`: the per-worker :class:`Router` the prediction service asks
  which version answers a request (hash-sticky buckets; shadow calls off the response
  path), and the health counters it reports.
* :mod:`bqx.rollout.machine`: the per-pair state machine (start / pause / resume / abort /
  promote, and the operator's automatic :meth:`RolloutManager.evaluate`).
* :mod:`bqx.rollout.quality`: paired matured quality of the two arms.
* :mod:`bqx.rollout.experiments`: Beta-Binomial + squared-error analysis of A/B tests.
"""

from __future__ import annotations

from bqx.errors import BqxError


class RolloutError(BqxError):
    """A rollout request that cannot be applied (HTTP 409 unless said otherwise)."""

    status = 409
    code = "conflict"


class RolloutConflictError(RolloutError):
    """The request conflicts with the current state (unapproved version, other feature
    set, a rollout already running, nothing to pause ...)."""


class RolloutInputError(RolloutError):
    """The request itself is invalid (e.g. the same version on both arms): HTTP 422."""

    status = 422
    code = "invalid_request"


class RolloutNotFoundError(RolloutError):
    """No such rollout / experiment: HTTP 404."""

    status = 404
    code = "not_found"


__all__ = [
    "RolloutConflictError",
    "RolloutError",
    "RolloutInputError",
    "RolloutNotFoundError",
]
