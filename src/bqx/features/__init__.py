"""Causal features: 228 base features -> 809 candidates, one implementation for batch and online.

Public API::

    build(bars, pair, *, start=None, end=None, with_target=False) -> DataFrame  # batch
    at(bars, pair, ts) -> Series                                                # one bar (online)
    catalog() -> DataFrame       # name, family, lag, lookback, formula
    lookback() -> int            # rows of history the online path needs
    columns() -> list[str]       # the candidate columns in their stable order
"""

from bqx.features.panel import Panel
from bqx.features.pipeline import (
    LAGS,
    at,
    at_array,
    build,
    catalog,
    columns,
    feature_set_version,
    lookback,
    missing_report,
    register_family,
    target_series,
    unregister_family,
)

__all__ = [
    "LAGS",
    "Panel",
    "at",
    "at_array",
    "build",
    "catalog",
    "columns",
    "feature_set_version",
    "lookback",
    "missing_report",
    "register_family",
    "target_series",
    "unregister_family",
]
