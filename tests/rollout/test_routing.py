"""Hash-sticky assignment: deterministic, proportional, anchored (ramping never moves a
client back)."""

from __future__ import annotations

from bqx.rollout.routing import BUCKETS, Route, Router, bucket


def test_buckets_are_deterministic_proportional_and_anchored() -> None:
    keys = [f"key{i}" for i in range(5000)]
    b = [bucket(k, "EURUSD") for k in keys]
    assert b == [bucket(k, "EURUSD") for k in keys]  # same client, same bucket, always
    at10 = {k for k, x in zip(keys, b, strict=True) if x < 0.10 * BUCKETS}
    at50 = {k for k, x in zip(keys, b, strict=True) if x < 0.50 * BUCKETS}
    assert abs(len(at10) / len(keys) - 0.10) < 0.02
    assert abs(len(at50) / len(keys) - 0.50) < 0.03
    assert at10 <= at50  # ramping 10 % -> 50 % only adds clients
    # the pair is part of the hash: a client's arms are independent across pairs
    other = {k for k in keys if bucket(k, "USDJPY") < 0.10 * BUCKETS}
    assert len(at10 & other) < len(at10) * 0.3


def test_router_selects_by_threshold(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bqx.config import Settings

    r = Router(Settings(home=tmp_path), lambda: None, lambda: None)
    assert r.select("EURUSD", "k") is None  # no rollout: one dict lookup, nothing else
    r.routes["EURUSD"] = Route(1, "EURUSD", "canary", "canary", 2, "1", "2", 1000, True)
    sels = [r.select("EURUSD", f"k{i}") for i in range(2000)]
    assert all(s is not None for s in sels)
    cand = [s for s in sels if s is not None and s.to_candidate]
    assert all(s.arm == "candidate" for s in cand)
    assert abs(len(cand) / 2000 - 0.10) < 0.03
    r.routes["EURUSD"] = Route(1, "EURUSD", "experiment", "canary", 2, "1", "2", 5000, False)
    s = r.select("EURUSD", "k1")
    assert s is not None and s.arm in ("a", "b")
