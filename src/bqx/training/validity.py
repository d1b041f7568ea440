"""No forecast from missing inputs: the one rule API, batch prediction and backtests share.

A version was fitted on rows whose candidates were mostly finite (training drops rows with
more than ``MAX_NAN_SHARE`` NaN candidates, see :func:`bqx.training.train.prepare`; the trees
route the remaining NaNs down their learned missing-value branch). After a feed outage the
windows that span the gap are invalid (NaN) and a forecast from such a vector comes from
inputs the model never saw. ``serve.min_valid_features`` is the share of the version's
*selected* features that must be finite for a forecast; below it the answer is "no forecast"
(``prediction: null``, HOLD, reason ``insufficient_data``) with the missing features listed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the signal reason for a refused forecast
REASON = "insufficient_data"


def selected_index(art: Any) -> np.ndarray:
    """Positions of the version's selected features in its candidate vector (cached)."""
    idx = getattr(art, "_selected_idx", None)
    if idx is None:
        pos = {c: i for i, c in enumerate(art.all_columns)}
        idx = np.array([pos[c] for c in art.features], dtype=np.intp)
        art._selected_idx = idx
    return idx


def missing_features(art: Any, x: np.ndarray, min_valid: float) -> list[str] | None:
    """``None`` when the candidate vector ``x`` is good enough to forecast from, else the
    names of the selected features that are not finite (share finite < ``min_valid``)."""
    idx = selected_index(art)
    if len(idx) == 0 or min_valid <= 0:
        return None
    ok = np.isfinite(np.asarray(x, dtype=np.float64)[idx])
    if np.count_nonzero(ok) / len(idx) >= min_valid:  # ok.mean(), without its overhead
        return None
    return [art.features[i] for i in np.flatnonzero(~ok)]


def valid_rows(features: list[str], X: Any, min_valid: float) -> np.ndarray:
    """Boolean mask over the rows of frame ``X`` (holding the selected ``features``): True
    where a forecast is allowed. The batch/backtest form of :func:`missing_features`."""
    if min_valid <= 0 or not features:
        return np.ones(len(X), dtype=bool)
    ok = np.isfinite(X[list(features)].to_numpy(dtype=np.float64))
    return np.asarray(ok.mean(axis=1) >= min_valid)


def raise_insufficient(pair: str, missing: list[str] | tuple[str, ...], n_selected: int) -> None:
    """The strict form: raise :class:`~bqx.errors.InsufficientDataError` (HTTP 409)."""
    from bqx.errors import InsufficientDataError

    shown = ", ".join(list(missing)[:20]) + (" ..." if len(missing) > 20 else "")
    raise InsufficientDataError(
        f"{pair}: {len(missing)} of {n_selected} selected features are missing ({shown}); "
        "no forecast",
        list(missing),
        hint="wait until the feature windows are valid again after the data gap, "
        "or call without strict to get prediction null with signal HOLD",
    )
