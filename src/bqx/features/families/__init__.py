"""Feature families, one module each, in SPEC order. ``FAMILIES`` is the registry."""

from __future__ import annotations

from bqx.features.context import Family
from bqx.features.families import (
    bollinger,
    bqx,
    correlation,
    currency,
    derived,
    fibonacci,
    reg,
    spread,
    stats,
    technical,
    timefeat,
    volume,
)

#: Lagged families first (lags 60/120/180/240 apply), then the non-lagged ones.
FAMILIES: tuple[Family, ...] = (
    bqx.FAMILY,
    reg.FAMILY,
    technical.FAMILY,
    volume.FAMILY,
    currency.FAMILY,
    stats.FAMILY,
    bollinger.FAMILY,
    timefeat.FAMILY,
    spread.FAMILY,
    correlation.FAMILY,
    fibonacci.FAMILY,
    derived.FAMILY,
)
