from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.training.splits import chrono_split, walk_forward


def test_chrono_split_fractions_and_purge_gaps():
    sp = chrono_split(10_000, 0.7, 0.15, gap=61)
    assert sp.train[0] == 0 and sp.train[-1] == 6999
    assert sp.val[0] - sp.train[-1] - 1 == 61
    assert sp.test[0] - sp.val[-1] - 1 == 61
    assert sp.test[-1] == 9999
    # a label at the last training row (bars t+1..t+60) never reaches a validation bar
    assert sp.train[-1] + 60 < sp.val[0]
    with pytest.raises(ValueError):
        chrono_split(100, 0.7, 0.15, gap=61)


def test_walk_forward_windows_roll_by_month_with_gaps():
    idx = pd.date_range("2024-01-01", "2024-12-31 23:59", freq="15min", tz="UTC")
    ws = walk_forward(idx, train_months=6, test_months=1, gap=61)
    assert len(ws) == 6  # tests Jul..Dec
    for w in ws:
        assert w.test[0] > w.train[-1] + 61
        assert (w.test_start - w.train_start).days >= 180
    assert ws[0].test_start.month == 7 and ws[-1].test_start.month == 12
    assert ws[1].train_start == pd.Timestamp("2024-02-01", tz="UTC")
    assert len(walk_forward(idx, 6, 1, windows=2, gap=61)) == 2
    # test months never overlap
    ends = [w.test_end for w in ws]
    assert all(a < b.replace() for a, b in zip(ends, [w.test_start for w in ws[1:]], strict=False))
    assert np.all(np.diff([w.test[0] for w in ws]) > 0)
