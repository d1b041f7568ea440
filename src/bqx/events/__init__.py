"""Event stream: decisions and model lifecycle events to a broker, at least once, in order.

One small interface (:class:`EventBus`: ``publish(topic, key, payload)``), one backend:
Redis Streams (``redis://``; stream ``<prefix><topic>``, fields ``key`` and ``payload``).
Idempotency: the publish is a Lua script that adds to the stream only if the key was not
seen (``SET NX`` of ``<prefix>seen:<key>``, 30 days), atomically, so a re-send after a crash
between "published" and "marked delivered" does not duplicate. Consumers read the stream
with XREAD/XREADGROUP and can also de-duplicate by ``key`` (the decision id).

Durability across broker outages comes from the outbox in the state DB
(:mod:`bqx.state.outbox`): :func:`relay_once` captures new decisions/promotions into the
outbox, then delivers pending rows in id order and stops at the first failure (order is
kept; nothing is dropped); ``bqx events relay`` runs it once or continuously.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from bqx.errors import BqxError

log = logging.getLogger(__name__)

SEEN_TTL_S = 30 * 86400
_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return redis.call('XADD', KEYS[1], '*', 'key', ARGV[1], 'payload', ARGV[2])
end
return false
"""


class BrokerUnavailable(BqxError):
    """The broker cannot be reached (events stay in the outbox)."""


class EventBus(Protocol):
    def publish(self, topic: str, key: str, payload: dict[str, Any]) -> bool:
        """Publish once per key; True if added, False if the key was already published."""
        ...


class RedisStreamsBus:
    """Redis Streams backend (``redis://host:port/db``)."""

    def __init__(self, url: str, prefix: str = "bqx:", timeout_s: float = 2.0) -> None:
        import redis

        self.prefix = prefix
        self.r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self.r.register_script(_LUA)

    def stream(self, topic: str) -> str:
        return f"{self.prefix}{topic}"

    def publish(self, topic: str, key: str, payload: dict[str, Any]) -> bool:
        import redis

        try:
            res = self._script(
                keys=[self.stream(topic), f"{self.prefix}seen:{key}"],
                args=[key, json.dumps(payload, default=str), SEEN_TTL_S],
            )
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise BrokerUnavailable(f"redis: {e}") from e
        return res is not None


def open_bus(url: str) -> EventBus:
    if url.startswith(("redis://", "rediss://")):
        return RedisStreamsBus(url)
    raise BqxError(f"unsupported event broker URL {url!r}", hint="use redis://host:port/db")


def relay_once(state: Any, bus: EventBus, batch: int = 500) -> dict[str, Any]:
    """Capture new decisions/promotions into the outbox, then deliver what is pending in
    order. Stops at the first broker failure (``broker_error`` says why)."""
    captured = state.capture_events()
    sent = dup = 0
    err = None
    while True:
        rows = state.pending_events(batch)
        if not rows:
            break
        done: list[int] = []
        try:
            for row in rows:
                if bus.publish(row["topic"], row["key"], row["payload"]):
                    sent += 1
                else:
                    dup += 1
                done.append(row["id"])
        except BrokerUnavailable as e:
            err = str(e)
        state.mark_delivered(done)
        if err is not None:
            break
    return {
        "captured": captured,
        "sent": sent,
        "duplicates": dup,
        "broker_error": err,
        "pending": len(state.pending_events(batch)),
    }


def relay_forever(state: Any, bus: EventBus, poll_s: float = 1.0, stop: Any = None) -> None:
    while stop is None or not stop.is_set():
        res = relay_once(state, bus)
        if res["broker_error"]:
            log.warning("event broker down, %s events wait in the outbox", res["pending"])
        if not res["sent"]:
            time.sleep(poll_s)
