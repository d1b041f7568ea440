"""Broken candidates for rollback tests: real registered versions whose *serving* path
fails (a bug offline evaluation does not see: batch prediction works, the one-row path
raises, returns garbage or is slow)."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

import numpy as np

from bqx.training.artifact import ModelArtifact


class BrokenArtifact(ModelArtifact):
    """Breaks after ``after`` one-row calls (a bug that shows under load: it passes the
    shadow phase's first calls, so the canary is really exposed to it)."""

    mode: str = "ok"
    after: int = 0
    calls: int = 0

    def predict_vector(self, x: np.ndarray) -> float:
        self.calls += 1
        if self.calls <= self.after:
            return super().predict_vector(x)
        if self.mode == "raises":
            raise RuntimeError("candidate bug: index out of range")
        if self.mode == "garbage":
            return float("nan")
        if self.mode == "slow":
            time.sleep(0.08)
        return super().predict_vector(x)


def register_broken(registry: Any, pair: str, from_version: str, mode: str, after: int = 0) -> str:
    """Register a copy of ``from_version`` whose serving path is broken in ``mode``."""
    from bqx.training.train import TrainResult

    art = registry.load(pair, version=from_version)
    b = BrokenArtifact(**{f.name: getattr(art, f.name) for f in fields(art) if f.init})
    b.mode = mode
    b.after = after
    b.version = None
    res = TrainResult(
        pair=pair,
        artifact=b,
        metrics=art.metrics,
        approved=True,
        approval_reason=f"test: broken ({mode})",
        seconds={"selection": 0.0, "fit": 0.0, "total": 0.0},
        rows={"train": 0, "val": 0, "test": 0, "gap": 0},
    )
    return registry.log_and_register(res, actor="test")
