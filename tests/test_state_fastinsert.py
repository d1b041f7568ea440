"""The writers' SQLite insert path stores exactly what a SQLAlchemy Core insert stores."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bqx.state import StateDB
from bqx.state.captures import capture_row

T0 = datetime(2024, 1, 5, 13, 40, 0, 123456, tzinfo=UTC)


def _decisions() -> list[dict]:
    return [
        {"decision_id": "d1", "request_time": T0, "pair": "EURUSD",
         "asof_ts": pd.Timestamp("2024-01-05 13:35", tz="UTC").to_pydatetime(), "horizon": 12,
         "prediction": 1.25e-5, "interval_lo": -0.0, "interval_hi": np.float64(3.3e-4),
         "confidence_level": 0.9, "signal": "BUY", "signal_strength": 0.5,
         "signal_reason": "x", "model_name": "bqx-EURUSD", "model_version": 7,
         "latency_ms": 1.5, "feature_hash": "ab" * 16, "key_id": "k1",
         "extra": {"source": "api", "arm": "production", "rollout_id": None, "regime": None}},
        # Nones everywhere they are allowed, a naive and a non-UTC time, a numpy horizon
        {"decision_id": "d2", "request_time": datetime(2024, 1, 5, 14, 0), "pair": "USDJPY",
         "asof_ts": datetime(2024, 1, 5, 15, 0, tzinfo=timezone(timedelta(hours=1))),
         "horizon": np.int64(3), "prediction": None, "extra": None},
        {"decision_id": "d3", "pair": "GBPUSD", "request_time": T0, "prediction": float("nan"),
         "realized_target": 0.1, "realized_at": T0},
    ]  # fmt: skip


def _raw(path: Path, table: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return [
            tuple((type(v).__name__, v) for v in r)
            for r in con.execute(f"SELECT * FROM {table} ORDER BY decision_id")
        ]
    finally:
        con.close()


def test_decision_rows_stored_as_core_stores_them(tmp_path: Path) -> None:
    core, fast = StateDB(f"sqlite:///{tmp_path}/a.db"), StateDB(f"sqlite:///{tmp_path}/b.db")
    core.log_decisions(_decisions())  # Core insert
    fast.log_decisions(_decisions(), if_absent=True)  # the writer's path
    assert fast.log_decisions(_decisions()[:1], if_absent=True) == ["d1"]  # absent only
    a, b = _raw(tmp_path / "a.db", "decisions"), _raw(tmp_path / "b.db", "decisions")
    assert len(a) == 3 and a == b


def test_capture_rows_stored_as_core_stores_them(tmp_path: Path, monkeypatch) -> None:
    rows = [
        capture_row(decision_id=f"c{i}", pair="EURUSD", asof_ts=T0 + timedelta(minutes=i),
                    model_version="3", names=["f1", "f2", "f3"],
                    values=[0.5 * i, float("nan"), float("inf")])
        for i in range(3)
    ] + [{"decision_id": "c9", "pair": "USDJPY", "asof_ts": None, "model_version": None,
          "captured_at": T0, "values": {"g1": 1.0, "g2": None}}]  # fmt: skip
    for r in rows:
        r["captured_at"] = T0  # the clock, the same in both
    core, fast = StateDB(f"sqlite:///{tmp_path}/a.db"), StateDB(f"sqlite:///{tmp_path}/b.db")
    monkeypatch.setattr(core, "dialect", "core")  # not "sqlite": the SQLAlchemy Core insert
    core.write_captures(rows)
    fast.write_captures(rows)
    fast.write_captures(rows[:1])  # a duplicate id and a known feature set: skipped
    for t in ("captures", "capture_feature_sets"):
        order = "decision_id" if t == "captures" else "key"
        a = sqlite3.connect(tmp_path / "a.db").execute(f"SELECT * FROM {t} ORDER BY {order}")
        b = sqlite3.connect(tmp_path / "b.db").execute(f"SELECT * FROM {t} ORDER BY {order}")
        ra = [tuple((type(v).__name__, v) for v in r) for r in a]
        rb = [tuple((type(v).__name__, v) for v in r) for r in b]
        assert ra and ra == rb, t
    assert sorted(fast.read_captures()["decision_id"]) == ["c0", "c1", "c2", "c9"]
