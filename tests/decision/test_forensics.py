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


@pytest.mark.parametrize("model", ["rf", "lightgbm", "ridge"])
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
