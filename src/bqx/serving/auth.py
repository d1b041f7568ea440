"""API keys: creation, hashed storage, fast constant-time verification, revocation, roles.

Key format: ``bqx_<key_id>_<secret>``. ``key_id`` (12 hex characters) is public: it names
the key in logs, the decision log, ``bqx keys list`` and rate-limit buckets. ``secret`` is
43 base62 characters from :mod:`secrets` (256 bits of entropy). Only alphanumerics and
underscores, so a double click selects the whole key and no URL/shell escaping is needed;
the fixed ``bqx_`` prefix lets secret scanners recognise leaked keys.

Why HMAC-SHA256 and not a slow KDF (scrypt/PBKDF2/argon2): a slow KDF protects
*low-entropy* secrets (passwords) against offline guessing after a database leak. Our
secrets are 256-bit random strings: guessing one is infeasible whatever the hash speed,
so key stretching adds nothing but cost. And verification is on the request path of an
API that targets p99 < 20 ms at > 200 req/s: scrypt at a sane cost (~50 ms) would blow
the budget by itself. A single keyed hash is what GitHub/Stripe-style tokens use. We
store ``HMAC-SHA256(key=salt, msg="<key_id>:<secret>")`` with a random 16-byte per-key
salt (so equal secrets would not give equal hashes, and a row cannot be moved to another
key id); the ``params`` column names the scheme so it can change later.

Verification (:meth:`ApiKeys.verify`): parse, fetch the key's row (from a small in-memory
cache, TTL ``ttl_s``, default 5 s), recompute the HMAC (~1 µs) and compare with
:func:`hmac.compare_digest` (constant time) on *every* call, cached or not. Caching the
row rather than "this key string is valid" keeps the secret out of the cache and makes
revocation simple: a key revoked by another process (``bqx keys revoke``) stops
verifying within ``ttl_s``; a revocation through the same :class:`ApiKeys` instance takes
effect at once. Unknown key ids are cached negatively too (bounded LRU), so a flood of
random keys does not become a flood of database queries.

``last_used_at`` is not written per request (that would put a database write on the hot
path): :meth:`ApiKeys.verify` notes it in memory; call :meth:`ApiKeys.flush_last_used`
from a periodic background task (e.g. every 60 s) and at shutdown.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError

from bqx.errors import BqxError
from bqx.state import StateDB, utcnow

KEY_PREFIX = "bqx"
SCHEME = "hmac-sha256-v1"
_B62 = string.ascii_letters + string.digits
_SECRET_LEN = 43  # 43 * log2(62) = 256.1 bits
_KEY_ID_BYTES = 6  # 12 hex characters
_KEY_RE = re.compile(r"bqx_([0-9a-f]{12})_([0-9A-Za-z]{43})")
_MAX_KEY_LEN = 100
#: Compared against when the key id is unknown, so unknown and wrong keys cost the same.
_DUMMY_SALT = bytes(16)
_DUMMY_HASH = "0" * 64


class Role(StrEnum):
    """Roles, least to most privileged. A role allows everything the roles below it do."""

    reader = "reader"
    trader = "trader"
    admin = "admin"


_RANK = {Role.reader: 0, Role.trader: 1, Role.admin: 2}


class ApiKeyError(BqxError, ValueError):
    """An API key operation was given bad input (unknown role, non-positive rate...)."""


def parse_role(role: str | Role) -> Role:
    """``"Trader"`` -> ``Role.trader``; raises :class:`ApiKeyError` for anything else."""
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise ApiKeyError(
            f"unknown role {role!r}", hint="use one of: " + ", ".join(r.value for r in Role)
        ) from None


def allows(role: str | Role, required: str | Role) -> bool:
    """True when ``role`` may do what ``required`` may (reader < trader < admin)."""
    return _RANK[parse_role(role)] >= _RANK[parse_role(required)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified key's public id, role and rate limit.

    ``rate`` is requests/second, or None for the service default
    (``settings.serve.rate_limit``): use :meth:`rate_or`.
    """

    key_id: str
    role: Role
    rate: float | None = None
    name: str | None = None

    def allows(self, required: str | Role) -> bool:
        return allows(self.role, required)

    def rate_or(self, default: float) -> float:
        return self.rate if self.rate is not None else default


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed (never the secret or its hash)."""

    key_id: str
    name: str | None
    role: Role
    rate: float | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role.value,
            "rate": self.rate,
            "status": "active" if self.active else "revoked",
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def hash_secret(key_id: str, secret: str, salt: bytes) -> str:
    """The stored hash: hex HMAC-SHA256 keyed by the per-key salt over ``key_id:secret``."""
    return hmac.new(salt, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """``bqx_<key_id>_<secret>`` -> ``(key_id, secret)``; None when malformed."""
    if not isinstance(key, str) or len(key) > _MAX_KEY_LEN:
        return None
    m = _KEY_RE.fullmatch(key.strip())
    return (m.group(1), m.group(2)) if m else None


def extract_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (either works;
    header names are matched case-insensitively when ``headers`` is a plain dict)."""
    lower = {k.lower(): v for k, v in headers.items()} if isinstance(headers, dict) else headers
    auth = lower.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = lower.get("x-api-key")
    return key.strip() if key else None


def _to_info(r: Mapping[str, Any]) -> KeyInfo:
    return KeyInfo(
        key_id=r["key_id"],
        name=r["name"],
        role=Role(r["role"]),
        rate=r["rate"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
    )


@dataclass(frozen=True)
class _Row:
    """What verification needs from a key row (cached)."""

    salt: bytes
    hash: str
    scheme: str
    principal: Principal
    revoked: bool


class ApiKeys:
    """Key management and verification over a :class:`~bqx.state.StateDB`. Thread-safe.

    One instance per API worker process (it holds the verification cache).
    ``clock`` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self,
        state: StateDB,
        *,
        ttl_s: float = 5.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.ttl_s = ttl_s
        self.max_cached = max_cached
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, _Row | None]] = OrderedDict()
        self._used: dict[str, datetime] = {}
        self._lock = threading.Lock()

    # -- management ---------------------------------------------------------------------
    def create_key(
        self, role: str | Role, name: str | None = None, rate: float | None = None
    ) -> tuple[str, str]:
        """Create a key; returns ``(key_id, key)``. The key is shown to the user once and
        never stored: only its salted hash is."""
        r = parse_role(role)
        if rate is not None and not (rate > 0 and rate < float("inf")):
            raise ApiKeyError(f"rate must be a positive number of requests/second, got {rate}")
        for _ in range(5):  # a 48-bit id collision is unlikely; retry rather than fail
            key_id = secrets.token_hex(_KEY_ID_BYTES)
            secret = "".join(secrets.choice(_B62) for _ in range(_SECRET_LEN))
            salt = secrets.token_bytes(16)
            try:
                self.state.insert_api_key(
                    key_id=key_id,
                    role=r.value,
                    hash=hash_secret(key_id, secret, salt),
                    salt=salt.hex(),
                    params=SCHEME,
                    name=name,
                    rate=float(rate) if rate is not None else None,
                )
            except IntegrityError:
                continue
            self.invalidate(key_id)
            return key_id, f"{KEY_PREFIX}_{key_id}_{secret}"
        raise BqxError("could not allocate a unique key id")  # pragma: no cover

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (effective at once here, within ``ttl_s`` in other processes).
        False when the key id is unknown."""
        ok = self.state.revoke_api_key(key_id)
        self.invalidate(key_id)
        return ok

    def list_keys(self) -> list[KeyInfo]:
        """All keys, oldest first, without secrets or hashes."""
        return [_to_info(r) for r in self.state.list_api_keys()]

    def invalidate(self, key_id: str | None = None) -> None:
        """Drop one key (or all) from the verification cache."""
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    # -- verification (request path) ----------------------------------------------------
    def verify(self, key: str | None) -> Principal | None:
        """The key's principal, or None if it is malformed, unknown, wrong or revoked.

        Cost: a dict lookup and one HMAC when cached; one indexed read per key per
        ``ttl_s`` otherwise. Never raises for bad input; a database outage raises
        :class:`~bqx.state.StateError` (the API should answer 503, not 401).
        """
        if not key:
            return None
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        row = self._row(key_id)
        if row is None or row.scheme != SCHEME:
            hmac.compare_digest(hash_secret(key_id, secret, _DUMMY_SALT), _DUMMY_HASH)
            return None
        ok = hmac.compare_digest(hash_secret(key_id, secret, row.salt), row.hash)
        if not ok or row.revoked:
            return None
        now = utcnow()
        with self._lock:
            self._used[key_id] = now
        return row.principal

    def is_cached(self, key: str | None) -> bool:
        """True when :meth:`verify` will not touch the database (malformed keys included)."""
        parsed = parse_key(key) if key else None
        if parsed is None:
            return True
        with self._lock:
            hit = self._cache.get(parsed[0])
        return hit is not None and self._clock() - hit[0] < self.ttl_s

    def _row(self, key_id: str) -> _Row | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and now - hit[0] < self.ttl_s:
                self._cache.move_to_end(key_id)
                return hit[1]
        r = self.state.get_api_key(key_id)
        row = None
        if r is not None:
            row = _Row(
                salt=bytes.fromhex(r["salt"]),
                hash=r["hash"],
                scheme=r["params"],
                principal=Principal(r["key_id"], Role(r["role"]), r["rate"], r["name"]),
                revoked=r["revoked_at"] is not None,
            )
        with self._lock:
            self._cache[key_id] = (now, row)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return row

    def flush_last_used(self) -> int:
        """Write the in-memory ``last_used_at`` marks (one transaction); returns how many."""
        with self._lock:
            used, self._used = self._used, {}
        if used:
            self.state.touch_api_keys(used)
        return len(used)


# -- module-level conveniences (CLI, scripts) ---------------------------------------------
def create_key(
    state: StateDB, role: str | Role, name: str | None = None, rate: float | None = None
) -> tuple[str, str]:
    """Create a key; returns ``(key_id, key)``. See :meth:`ApiKeys.create_key`."""
    return ApiKeys(state).create_key(role, name=name, rate=rate)


def revoke(state: StateDB, key_id: str) -> bool:
    """Revoke a key; False when unknown. See :meth:`ApiKeys.revoke`."""
    return ApiKeys(state).revoke(key_id)


def list_keys(state: StateDB) -> list[KeyInfo]:
    """All keys without secrets. See :meth:`ApiKeys.list_keys`."""
    return ApiKeys(state).list_keys()
