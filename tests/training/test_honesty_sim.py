"""Issue 10: what real FX does to models. Short history, a weak signal that switches on and
off, heavy tails and strong volatility clustering: the default model must not be much worse
than "no view" (test R² >= -0.05, thanks to the out-of-sample shrinkage) and the approval
rule (with confidence) must refuse it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from bqx import features as F
from bqx.config import Settings
from bqx.data.simulator import generate
from bqx.training.train import train_frame


def test_realism_options_change_the_data_and_defaults_do_not() -> None:
    a = generate(days=4, pairs="EURUSD", seed=1).bars
    same = generate(days=4, pairs="EURUSD", seed=1, signal_on_share=1.0, vol_clustering=1.0).bars
    assert a.equals(same)
    heavy = generate(days=4, pairs="EURUSD", seed=1, tail_df=3.0).bars
    r = lambda b: np.diff(np.log(b["close"].to_numpy()))  # noqa: E731
    assert st.kurtosis(r(heavy)) > st.kurtosis(r(a)) + 1.0
    with pytest.raises(ValueError):
        generate(days=1, pairs="EURUSD", tail_df=2.0)


@pytest.mark.slow
def test_weak_short_history_is_near_no_view_and_refused() -> None:
    bars = generate(
        days=20,
        pairs="EURUSD",
        seed=3,
        signal_strength=0.02,
        signal_on_share=0.3,
        tail_df=4.0,
        vol_clustering=2.0,
    ).bars
    df = F.build(bars, "EURUSD", with_target=True, dtype=np.float32)
    res = train_frame("EURUSD", df, Settings())
    assert res.artifact.model == "lgbm_rf"  # the default (issue 15 item 5)
    assert 0.0 <= res.artifact.shrinkage.beta <= 1.0
    assert res.metrics["test"]["r2"] >= -0.05, res.metrics["test"]
    assert not res.approved, res.approval_reason
    assert "confidence" in res.approval_reason
