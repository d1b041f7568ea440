from __future__ import annotations

import pandas as pd
import pytest

from bqx.data.simulator import generate
from bqx.features.panel import Panel


@pytest.fixture(scope="session")
def bars_small() -> pd.DataFrame:
    """All 28 pairs, 4 calendar days (~3 trading days: ~4,300 bars each)."""
    return generate(days=4, seed=11, start="2024-03-05").bars


@pytest.fixture(scope="session")
def bars_medium() -> pd.DataFrame:
    """All 28 pairs, 9 calendar days incl. a weekend (~6 trading days: ~9,000 bars each)."""
    return generate(days=9, seed=5, start="2024-03-04", signal_strength=0.05).bars


@pytest.fixture(scope="session")
def panel_medium(bars_medium: pd.DataFrame) -> Panel:
    return Panel.from_bars(bars_medium)
