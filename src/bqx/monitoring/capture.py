"""Capture of served model inputs (the version's selected features) for drift monitoring.

Beside the features, the market column :data:`bqx.monitoring.drift.MARKET_VOL` (the served
bar's realised volatility) is captured when serving computes it for the model anyway.

The service calls :meth:`ServiceCapture.submit` after each logged decision: it slices the
selected features out of the candidate vector (a numpy fancy index, ~1 us) and appends
the row to the writer's deque (no lock, no thread wake-up); packing and the database write
happen on the writer thread, which wakes by itself a few times a second
(:class:`bqx.state.CaptureWriter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bqx.monitoring.drift import MARKET_VOL
from bqx.state.captures import CaptureWriter

if TYPE_CHECKING:
    from bqx.config import Settings
    from bqx.state import StateDB


class ServiceCapture:
    """Per-service capture: sampling at ``monitor.capture_rate``, background batches."""

    def __init__(self, state: StateDB, settings: Settings) -> None:
        self.writer = CaptureWriter(state, rate=settings.monitor.capture_rate)
        self._idx: dict[int, tuple[Any, np.ndarray, list[str]]] = {}

    def _index(self, art: Any) -> tuple[np.ndarray, list[str]]:
        hit = self._idx.get(id(art))
        if hit is None or hit[0] is not art:
            from bqx.features import columns

            pos = {c: i for i, c in enumerate(columns())}
            names = list(art.features)
            # the market column (realised volatility) rides along when serving computes it
            # anyway (the intervals' scale feature: in needed_columns): drift tests its level
            if MARKET_VOL not in names and MARKET_VOL in getattr(art, "needed_columns", ()):
                names.append(MARKET_VOL)
            hit = (art, np.array([pos[n] for n in names], dtype=np.intp), names)
            self._idx[id(art)] = hit
        return hit[1], hit[2]

    def submit(self, decision_id: str, pair: str, asof: Any, values: np.ndarray, art: Any) -> None:
        """Enqueue the selected inputs of one decision (never raises into the request)."""
        if not self.writer.sampled(decision_id):
            self.writer.sampled_out += 1
            return
        try:
            idx, names = self._index(art)
            x = values[idx]
        except Exception:  # a model whose features are not candidates: nothing to capture
            self.writer.dropped += 1
            return
        self.writer.submit_sampled(
            {
                "decision_id": decision_id,
                "pair": pair,
                "asof_ts": asof,
                "model_version": str(art.version),
                "names": names,
                "values": x,
            }
        )

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close()

    def status(self) -> dict[str, Any]:
        return self.writer.status()
