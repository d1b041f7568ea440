"""Forensics: SHAP additivity per model family; the worker follows the decision log."""

from __future__ import annotations

import numpy as np
import pytest

from bqx import features as F
from bqx.data.simulator import generate
from bqx.decision.forensics import ADDITIVITY_TOL, explain, shap_values


@pytest.fixture(scope="module")
def frame():
    bars = generate(days=4, pairs=["EURUSD"], seed=2, signal_strength=0.2).bars
    return F.build(bars, "EURUSD", with_target=True)


@pytest.mark.parametrize("model", ["rf", "lgbm_rf", "lightgbm", "ridge"])
def test_shap_values_add_up_to_the_model_output(frame, model):
    from bqx.config import Settings
    from bqx.training.train import train_frame

    s = Settings()
    s.train.max_features = 12
    params = {"n_estimators": 20} if model != "ridge" else None
    art = train_frame(
        "EURUSD", frame, s, model=model, params=params, selection_rows=2000, n_jobs=1
    ).artifact
    X = frame.drop(columns=["target"]).to_numpy(np.float64)
    for i in (len(X) // 3, len(X) // 2, len(X) - 1):
        sv, base, out = shap_values(art, X[i])
        assert out == pytest.approx(art.predict_vector(X[i]), abs=1e-12)
        assert abs(base + sv.sum() - out) < ADDITIVITY_TOL
        rec = explain(art, X[i], decision={"decision_id": "d", "extra": {"arm": "canary"}})
        assert rec["additive"] and rec["audit"]["arm"] == "canary"
        assert len(rec["shap"]) == len(art.features)


def test_outbox_save_is_idempotent_and_purge_respects_retention(tmp_path):
    from datetime import timedelta

    import sqlalchemy as sa

    from bqx.state import StateDB, utcnow

    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    st.create_tables()
    st.log_decisions(
        [
            {"decision_id": f"d{i}", "request_time": utcnow(), "pair": "EURUSD", "prediction": 0.0}
            for i in range(3)
        ]
    )
    assert [d["decision_id"] for d in st.pending_forensics()] == ["d0", "d1", "d2"]
    assert st.save_forensics("d0", {"x": 1}) and not st.save_forensics("d0", {"x": 2})
    assert st.read_forensics("d0")["explanation"] == {"x": 1}
    assert [d["decision_id"] for d in st.pending_forensics()] == ["d1", "d2"]
    st.save_forensics("d1", {"x": 3})
    old = utcnow() - timedelta(days=100)
    with st.engine.begin() as c:
        c.execute(
            sa.update(st.t.forensics)
            .where(st.t.forensics.c.decision_id == "d0")
            .values(created_at=old)
        )
    assert st.purge_forensics(90) == 1
    assert st.read_forensics("d0") is None and st.read_forensics("d1") is not None


def test_worker_priority_is_the_idle_class():
    """`bqx forensics worker` lowers its CPU priority: Linux SCHED_IDLE (else nice 19).
    Checked in a thread of its own (on Linux both are per thread), so the test process
    keeps its priority."""
    import os
    import threading

    from bqx.decision.forensics import lower_priority

    got: list = []
    th = threading.Thread(
        target=lambda: got.extend([lower_priority(), os.sched_getscheduler(0), os.nice(0)])
    )
    th.start()
    th.join(10)
    if got[0] == "SCHED_IDLE":
        assert got[1] == os.SCHED_IDLE
    else:  # SCHED_IDLE refused (some containers): nice 19
        assert got[0] == "nice 19" and got[2] == 19
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this thread is untouched


def test_worker_bars_come_from_one_store_read_per_batch_and_equal_read_asof(tmp_path):
    """The worker's as-of reads (BatchBars) are the store's read_asof to the row, for
    every time in the loaded window, while opening the store ONCE for the whole batch
    (before: one exclusive DuckDB connection per decision, which kept clients waiting on
    the file lock) and not at all for a batch the window covers; bars that arrive later
    (and corrections of the last few) come in one incremental read; outside the window,
    or with too few bars in it, the store answers."""
    from datetime import timedelta

    import pandas as pd

    from bqx.data.store import DuckDBStore
    from bqx.decision.forensics import BatchBars

    bars = generate(days=2, pairs=["EURUSD", "USDJPY", "GBPUSD"], seed=4).bars
    # a hole of 90 bars in one pair: its window must reach further back there
    ts = bars["ts"]
    hole = (bars["pair"] == "USDJPY") & (ts >= ts.iloc[0] + pd.Timedelta(hours=30))
    hole &= ts < ts.iloc[0] + pd.Timedelta(hours=31, minutes=30)
    bars = bars[~hole]
    stamps = sorted(bars["ts"].unique())
    cut = stamps[-100]  # bars after it arrive later
    store = DuckDBStore(tmp_path / "bars.duckdb", timedelta(minutes=1))
    store.upsert(bars[bars["ts"] <= cut])
    n = 300
    first, last = stamps[len(stamps) // 2], stamps[-110]
    bb = BatchBars(store, n)
    opens = store.open_stats
    o0 = opens["opens"]
    assert bb.load(first, last)
    assert opens["opens"] - o0 == 1 and bb.loads == 1
    o1 = opens["opens"]
    inside = [first, last, cut, *stamps[len(stamps) // 2 + 7 : -110 : 97]]
    for t in inside:
        got = bb.read_asof(t, n)
        assert len(got) == 3 * n
        pd.testing.assert_frame_equal(got, store.read_asof(t, n))
    odd = pd.Timestamp(first) + pd.Timedelta(seconds=30)  # between two bars
    pd.testing.assert_frame_equal(bb.read_asof(odd, n), store.read_asof(odd, n))
    assert bb.fallbacks == 0
    assert opens["opens"] - o1 == len(inside) + 1  # the comparison reads only
    # a later batch the window covers (it read ahead to the newest bar): no read at all
    o2 = opens["opens"]
    assert not bb.load(stamps[-200], cut) and opens["opens"] == o2 and bb.loads == 1
    # before the window (too few bars in it) and past its end: the store answers, exact
    early = stamps[len(stamps) // 2 - 200]
    for t in (early, stamps[-50]):
        pd.testing.assert_frame_equal(bb.read_asof(t, n), store.read_asof(t, n))
    assert bb.fallbacks == 2
    # the later bars arrive, one of the last bars before the cut corrected: one
    # incremental read sees both
    store.upsert(bars[bars["ts"] > cut])
    fix = bars[(bars["pair"] == "EURUSD") & (bars["ts"] == stamps[-103])].copy()
    fix["close"] += 1e-4
    fix["high"] = fix[["high", "close"]].max(axis=1)
    store.upsert(fix)
    o3 = opens["opens"]
    assert bb.load(stamps[-300], stamps[-1]) and opens["opens"] - o3 == 1 and bb.loads == 2
    for t in (stamps[-300], stamps[-103], cut, stamps[-50], stamps[-1]):
        pd.testing.assert_frame_equal(bb.read_asof(t, n), store.read_asof(t, n))
    assert bb.fallbacks == 2
    # at the start of the history (fewer than n bars exist): all of them, from memory
    bb2 = BatchBars(store, n)
    assert bb2.load(stamps[5], stamps[400])
    for t in (stamps[5], stamps[150], stamps[400]):
        got = bb2.read_asof(t, n)
        pd.testing.assert_frame_equal(got, store.read_asof(t, n))
    assert len(bb2.read_asof(stamps[5], n)) < 3 * n and bb2.fallbacks == 0
