"""Selection and scaling see only the training segment."""

from __future__ import annotations

import numpy as np

from bqx.config import Settings
from bqx.training import selection as selection_mod
from bqx.training import train as train_mod
from bqx.training.splits import chrono_split


def test_selection_and_scaler_use_training_rows_only(signal_frame, monkeypatch):
    df = signal_frame.copy()
    prepared = train_mod.prepare(df)
    sp = chrono_split(len(prepared), 0.7, 0.15, 61)
    # a feature that equals the target in validation and test, and is pure noise in training:
    # if selection or scaling looked past the training segment, it would be picked / shift the mean
    rng = np.random.default_rng(0)
    leak = rng.normal(0, 1, len(prepared)).astype(np.float32)
    later = np.concatenate([sp.val, sp.test])
    leak[later] = prepared["target"].to_numpy()[later] * 1e4 + 1000.0
    prepared = prepared.assign(leak_probe=leak)

    seen: dict[str, object] = {}
    real = selection_mod.select_features

    def spy(X, y, **kw):  # type: ignore[no-untyped-def]
        seen["index"] = X.index
        return real(X, y, **kw)

    monkeypatch.setattr(train_mod, "select_features", spy)
    s = Settings()
    res = train_mod.train_frame("EURUSD", prepared, s, model="ridge", selection_rows=5000)
    idx = seen["index"]
    assert idx.max() == prepared.index[sp.train[-1]]  # nothing after the training segment
    assert len(idx) == len(sp.train)
    assert "leak_probe" not in res.artifact.features
    # the scaler's statistics are exactly the training rows' statistics
    scaler = res.artifact.pipeline.named_steps["scale"]
    Xtr = prepared.iloc[sp.train][res.artifact.features].to_numpy(np.float64)
    np.testing.assert_allclose(scaler.mean_, np.nanmean(Xtr, axis=0), rtol=1e-10, atol=1e-15)
    # and the purge gap separates the segments in the stored data window
    w = res.artifact.data_window
    assert w["train"][1] < w["val"][0] < w["val"][1] < w["test"][0]
