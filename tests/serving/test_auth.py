"""API keys: hashed storage, verification, constant-time compare, revocation TTL, roles."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bqx.serving import auth
from bqx.serving.auth import (
    ApiKeyError,
    ApiKeys,
    Principal,
    Role,
    allows,
    create_key,
    extract_key,
    list_keys,
    parse_key,
    parse_role,
    revoke,
)
from bqx.state import StateDB


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    s = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def test_key_format_and_entropy(state: StateDB) -> None:
    keys = ApiKeys(state)
    key_id, key = keys.create_key("reader")
    assert re.fullmatch(r"bqx_[0-9a-f]{12}_[0-9A-Za-z]{43}", key)
    assert parse_key(key) == (key_id, key.split("_", 2)[2])
    other = {keys.create_key("reader")[1] for _ in range(20)}
    assert len(other) == 20 and key not in other


def test_only_a_salted_hash_is_stored(state: StateDB) -> None:
    key_id, key = create_key(state, "trader", name="desk")
    secret = key.split("_", 2)[2]
    row = state.get_api_key(key_id)
    assert row is not None
    for v in row.values():
        assert key not in str(v) and secret not in str(v)
    assert row["hash"] == auth.hash_secret(key_id, secret, bytes.fromhex(row["salt"]))
    assert row["params"] == auth.SCHEME
    # the same secret under another salt gives another hash
    assert auth.hash_secret(key_id, secret, bytes(16)) != row["hash"]


def test_verify(state: StateDB) -> None:
    keys = ApiKeys(state)
    key_id, key = keys.create_key("trader", name="desk", rate=5)
    p = keys.verify(key)
    assert p == Principal(key_id, Role.trader, 5.0, "desk")
    assert p.rate_or(100) == 5.0
    assert keys.verify(key) == p  # cached path
    _, default_key = keys.create_key("admin")
    assert keys.verify(default_key).rate is None  # type: ignore[union-attr]
    assert keys.verify(default_key).rate_or(100) == 100  # type: ignore[union-attr]
    assert keys.verify("  " + key + "\n") == p  # surrounding whitespace tolerated


def test_wrong_keys_fail(state: StateDB) -> None:
    keys = ApiKeys(state)
    key_id, key = keys.create_key("admin")
    secret = key.split("_", 2)[2]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert keys.verify(f"bqx_{key_id}_{wrong_secret}") is None  # right id, wrong secret
    other_id = "0" * 12 if key_id != "0" * 12 else "1" * 12
    assert keys.verify(f"bqx_{other_id}_{secret}") is None  # right secret, wrong id
    for bad in (
        None,
        "",
        "bqx_",
        "Bearer x",
        key + "x",
        key.upper(),
        "x" * 10_000,
        f"bqx_{key_id}",
    ):
        assert keys.verify(bad) is None
    assert keys.verify(key) is not None


def test_constant_time_compare_is_used(state: StateDB, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = ApiKeys(state)
    key_id, key = keys.create_key("reader")
    assert keys.verify(key) is not None  # cold
    assert keys.verify(key) is not None  # cached: still compared
    assert keys.verify(f"bqx_{key_id}_{'A' * 43}") is None  # wrong secret
    assert keys.verify(f"bqx_{'f' * 12}_{'A' * 43}") is None  # unknown id: dummy compare
    assert len(calls) == 4
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_revocation_in_same_instance_is_immediate(state: StateDB) -> None:
    keys = ApiKeys(state, ttl_s=60)
    key_id, key = keys.create_key("reader")
    assert keys.verify(key) is not None
    assert keys.revoke(key_id)
    assert keys.verify(key) is None
    assert not keys.revoke("ffffffffffff")


def test_revocation_elsewhere_takes_effect_within_ttl(state: StateDB) -> None:
    clock = Clock()
    server = ApiKeys(state, ttl_s=5.0, clock=clock)
    key_id, key = create_key(state, "trader")
    assert server.verify(key) is not None
    assert revoke(state, key_id)  # e.g. `bqx keys revoke` in another process
    clock.t += 4.9
    assert server.verify(key) is not None  # still cached (documented: up to ttl_s)
    clock.t += 0.2
    assert server.verify(key) is None


def test_revocation_real_time(state: StateDB) -> None:
    server = ApiKeys(state, ttl_s=0.2)
    key_id, key = create_key(state, "reader")
    assert server.verify(key) is not None
    revoke(state, key_id)
    time.sleep(0.25)
    assert server.verify(key) is None


def test_unknown_ids_are_cached_negatively(state: StateDB, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    server = ApiKeys(state, ttl_s=5.0, clock=clock)
    lookups: list[str] = []
    real = state.get_api_key

    def counting(kid: str) -> dict[str, object] | None:
        lookups.append(kid)
        return real(kid)

    monkeypatch.setattr(state, "get_api_key", counting)
    garbage = f"bqx_{'e' * 12}_{'A' * 43}"
    for _ in range(100):  # a flood of the same bad key costs one query per TTL
        assert server.verify(garbage) is None
    assert lookups == ["e" * 12]
    clock.t += 5.1
    assert server.verify(garbage) is None
    assert len(lookups) == 2


def test_cache_is_bounded(state: StateDB) -> None:
    keys = ApiKeys(state, max_cached=10)
    for i in range(50):
        keys.verify(f"bqx_{i:012x}_{'A' * 43}")
    assert len(keys._cache) == 10


def test_last_used_is_flushed_not_written_per_request(state: StateDB) -> None:
    keys = ApiKeys(state)
    _, key = keys.create_key("reader")
    keys.verify(key)
    assert list_keys(state)[0].last_used_at is None
    assert keys.flush_last_used() == 1
    info = list_keys(state)[0]
    assert info.last_used_at is not None and info.last_used_at.tzinfo is not None
    assert keys.flush_last_used() == 0


def test_list_keys(state: StateDB) -> None:
    a, _ = create_key(state, "reader", name="a")
    b, _ = create_key(state, Role.admin, rate=2.5)
    revoke(state, a)
    infos = {k.key_id: k for k in list_keys(state)}
    assert infos[a].role is Role.reader and not infos[a].active and infos[a].name == "a"
    assert infos[b].active and infos[b].rate == 2.5
    d = infos[b].as_dict()
    assert d["status"] == "active" and d["role"] == "admin"
    assert "hash" not in d and "salt" not in d


def test_bad_input(state: StateDB) -> None:
    with pytest.raises(ApiKeyError, match="role"):
        create_key(state, "root")
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ApiKeyError, match="rate"):
            create_key(state, "reader", rate=rate)
    assert list_keys(state) == []


def test_roles() -> None:
    assert parse_role("Trader") is Role.trader
    with pytest.raises(ApiKeyError):
        parse_role("superuser")
    order = ["reader", "trader", "admin"]
    for i, have in enumerate(order):
        for j, need in enumerate(order):
            assert allows(have, need) == (i >= j)
    assert Principal("k", Role.trader).allows("reader")
    assert not Principal("k", Role.trader).allows(Role.admin)


def test_extract_key() -> None:
    assert extract_key({"Authorization": "Bearer bqx_abc"}) == "bqx_abc"
    assert extract_key({"authorization": "bearer  bqx_abc "}) == "bqx_abc"
    assert extract_key({"X-API-Key": "bqx_abc"}) == "bqx_abc"
    assert extract_key({"Authorization": "Basic Zm9v"}) is None
    assert extract_key({}) is None
