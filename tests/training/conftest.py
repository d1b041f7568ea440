from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.data.simulator import generate


@pytest.fixture(scope="session")
def signal_frame() -> pd.DataFrame:
    """One pair with a real predictable component (oracle R² ~0.2), candidates + target."""
    bars = generate(days=45, pairs="EURUSD", seed=21, signal_strength=0.2).bars
    return F.build(bars, "EURUSD", with_target=True, dtype=np.float32)
