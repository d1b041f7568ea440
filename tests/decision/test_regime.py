"""Regime detector: deterministic labels, scaling, the entropy alert, the simulator truth."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bqx.config import RegimeSettings
from bqx.decision.regime import RegimeModel, RegimeTracker, label_states, uncertainty_scale


def test_labels_do_not_depend_on_state_order():
    means = np.array([[0.5, -9.0], [-0.4, -8.5], [0.0, -9.6]])
    for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        labels, rank = label_states(means[perm])
        got = {tuple(means[perm][i]): labels[i] for i in range(3)}
        assert got == {(0.5, -9.0): "bull", (-0.4, -8.5): "bear", (0.0, -9.6): "sideways"}
        assert sorted(rank) == [0, 1, 2]


def test_uncertainty_scale():
    assert uncertainty_scale(0.0) == 1.0
    assert uncertainty_scale(math.log2(3)) == pytest.approx(0.0)
    assert uncertainty_scale(math.log2(3), floor=0.3) == pytest.approx(0.3)


def test_entropy_alert_after_an_hour_of_bars(tmp_path):
    from bqx.state import StateDB

    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    st.create_tables()
    tr = RegimeTracker(RegimeSettings(entropy_alert_bits=1.0, entropy_alert_minutes=60), lambda: st)
    t0 = 1_700_000_000 * 10**9
    for m in range(0, 60):  # 59 minutes of high entropy: no alert yet
        tr._follow_entropy("EURUSD", t0 + m * 60 * 10**9, 1.5)
    tr._follow_entropy("EURUSD", t0 + 30 * 60 * 10**9 + 1, 0.2)  # reset
    for m in range(0, 61):
        tr._follow_entropy("EURUSD", t0 + (100 + m) * 60 * 10**9, 1.5)
    for _ in range(100):
        if len(st.read_alerts()):
            break
        time.sleep(0.02)
    al = st.read_alerts()
    assert (
        len(al) == 1 and al["rule"].iloc[0] == "regime_entropy" and al["pair"].iloc[0] == "EURUSD"
    )


def test_uninformative_model_gives_the_stationary_distribution():
    A = np.array([[0.98, 0.01, 0.01], [0.02, 0.96, 0.02], [0.01, 0.01, 0.98]])
    m = RegimeModel(
        means=np.zeros((3, 2)),
        covars=np.stack([np.eye(2)] * 3),
        transmat=A,
        labels=["bull", "bear", "sideways"],
        vol_rank=[0, 1, 2],
    )
    close = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-4, 500)))
    ts = np.arange(500, dtype=np.int64) * 60 * 10**9
    p = m.filter(close, ts)
    assert np.allclose(p, m.start[None, :], atol=1e-12)


def test_simulator_exposes_its_true_regime_path():
    from bqx.data.simulator import generate

    sim = generate(days=3, pairs=["EURUSD"], seed=1)
    assert sim.regimes is not None and len(sim.regimes) == len(sim.bars)
    assert set(np.unique(sim.regimes)) <= {0, 1, 2}
    # turbulent bars are more volatile than calm ones (the path is the one that was used)
    r = np.diff(np.log(sim.bars["close"].to_numpy()), prepend=np.nan)
    reg = sim.regimes.to_numpy()
    v = {k: np.nanstd(r[reg == k]) for k in np.unique(reg)}
    assert v[max(v)] > v[min(v)]


def test_filtered_state_recovers_the_simulators_volatility_regime():
    """Fitted on 20 days of a simulated 28-pair market, the filtered state's volatility rank
    (the labelling rule, no look at the truth) matches the simulator's regime on the later,
    held-out bars far more often than chance (full figure: benchmarks/bench_decision.py)."""
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score

    from bqx.data.simulator import generate
    from bqx.decision.regime import fit_regime
    from bqx.features.panel import Panel

    sim = generate(days=30, seed=7)
    panel = Panel.from_bars(sim.bars)
    ts = panel.ts
    truth = sim.regimes.reindex(pd.DatetimeIndex(ts, tz="UTC")).to_numpy().astype(int)
    ntr = int(np.searchsorted(ts, ts[0] + 20 * 86400 * 10**9))
    m = fit_regime(panel.close[:ntr], ts[:ntr], panel.pairs, pair="EURUSD", restarts=3)
    P = m.filter(panel.close, ts, panel.pairs)[ntr:]
    pred = np.asarray(m.vol_rank)[np.argmax(P, axis=1)]
    tt = truth[ntr:]
    share = np.bincount(tt, minlength=3) / len(tt)
    assert len(np.unique(tt)) >= 2  # the held-out time has regime changes to find
    acc, bacc = float(np.mean(pred == tt)), balanced_accuracy_score(tt, pred)
    assert acc > share.max() + 0.15, (acc, share)
    assert bacc > 0.6, bacc
