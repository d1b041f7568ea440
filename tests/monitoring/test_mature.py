"""Maturation fills realised targets equal to the training target (feature store), once."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from bqx.config import Settings
from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore
from bqx.features.store import FeatureStore
from bqx.monitoring import mature
from bqx.state import StateDB


def test_mature_equals_training_target_and_is_idempotent(tmp_path):
    bars = generate(days=6, pairs=["EURUSD", "USDJPY"], seed=5, start="2024-03-04").bars
    # a 3-hour hole in EURUSD: targets across it are NaN in training and must stay NaN
    ts = pd.to_datetime(bars["ts"], utc=True)
    hole = (bars["pair"] == "EURUSD") & (ts >= "2024-03-06 10:00") & (ts < "2024-03-06 13:00")
    bars = bars[~hole]
    bs = DuckDBStore(tmp_path / "bars.duckdb", timedelta(minutes=1))
    bs.upsert(bars)
    s = Settings()
    fs = FeatureStore(
        tmp_path / "f", horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
    )
    fs.build(bs, ["EURUSD"])
    train = fs.read("EURUSD", columns_=["w60_avg"])["target"]

    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    eur = pd.DatetimeIndex(pd.to_datetime(bars.loc[bars["pair"] == "EURUSD", "ts"], utc=True))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(eur), 300, replace=False))
    asofs = [pd.Timestamp(t) for t in eur[pick]]
    asofs += [pd.Timestamp("2024-03-06 09:30", tz="UTC")]  # horizon runs into the hole
    asofs += [pd.Timestamp(eur[-5])]  # horizon not reached yet
    ids = state.log_decisions(
        [{"pair": "EURUSD", "asof_ts": t, "horizon": s.horizon, "prediction": 0.0} for t in asofs]
    )
    rep = mature(state, bs, s)
    assert rep.pending == len(asofs)
    assert rep.waiting >= 1 and rep.matured > 200 and rep.matured_nan >= 1

    got = state.read_decisions("EURUSD").set_index("decision_id").loc[ids]
    exp = train.reindex(pd.DatetimeIndex(asofs)).to_numpy(dtype=np.float64)
    done = got["realized_at"].notna().to_numpy()
    assert not done[-1]  # the last one waits for bars
    real = got["realized_target"].to_numpy(dtype=np.float64)
    # bit for bit, NaN where training has NaN
    np.testing.assert_array_equal(real[done], exp[done])
    assert np.isnan(real[-2]) and done[-2]

    before = state.read_decisions("EURUSD")
    rep2 = mature(state, bs, s)
    assert rep2.pending == rep.waiting and rep2.matured == 0 and rep2.matured_nan == 0
    after = state.read_decisions("EURUSD")
    pd.testing.assert_frame_equal(before, after)
