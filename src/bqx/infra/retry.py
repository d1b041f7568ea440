"""Bounded exponential backoff, and a per-dependency breaker, for reconnecting by oneself.

Use this for every long-lived connection to a server (bar store, state database, registry,
and the brokers and notifiers to come) so that an outage heals without a restart and a dead
server is not hammered:

* :class:`Backoff` -- delays ``base_s * factor**n`` (capped at ``max_s``, with +-``jitter``
  so that many workers do not retry in lock-step). Seconds throughout.
* :func:`retry` -- call ``fn`` until it succeeds, at most ``attempts`` times or until
  ``deadline_s`` has passed, sleeping the backoff between attempts, retrying only the
  exceptions ``retry_on`` says are transient (default: anything :func:`bqx.infra.outage.
  is_transient` recognises: connection errors of psycopg, SQLAlchemy, DuckDB's file lock,
  MLflow/requests network errors, ``TimeoutError``/``ConnectionError``).
* :class:`Breaker` -- the health of one dependency for callers that must not block: a
  background loop asks :meth:`Breaker.due` before trying, reports :meth:`Breaker.ok` or
  :meth:`Breaker.failed`; ``/readyz`` reads :attr:`Breaker.healthy`. After a failure the
  next attempt is due after the backoff delay, so readiness flips back within one delay
  (at most ``max_s``) of the server returning.

Example (a notifier that reconnects by itself)::

    from bqx.infra import Breaker, retry

    breaker = Breaker("notifier", base_s=0.5, max_s=10)

    def send(msg):
        retry(lambda: client.post(msg), attempts=3, deadline_s=5)

    # background loop
    if breaker.due():
        try:
            send_pending(); breaker.ok()
        except Exception as e:
            breaker.failed(e)
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential delays in seconds: base_s, base_s*factor, ... capped at max_s."""

    base_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1  # relative: +-10 %
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this attempt)."""
        d = min(self.max_s, self.base_s * self.factor ** min(self.attempt, 60))
        self.attempt += 1
        if self.jitter:
            d *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(d, self.max_s))

    def reset(self) -> None:
        self.attempt = 0


def retry(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    deadline_s: float | None = None,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()`` with up to ``attempts`` tries (and within ``deadline_s`` seconds when given).

    Non-transient exceptions (``retry_on(e)`` false) propagate at once; the last transient
    one propagates when attempts or time run out.
    """
    if retry_on is None:
        from bqx.infra.outage import is_transient

        retry_on = is_transient
    b = backoff or Backoff()
    end = None if deadline_s is None else time.monotonic() + deadline_s
    for i in range(max(1, attempts)):
        try:
            return fn()
        except Exception as e:
            if not retry_on(e) or i == attempts - 1:
                raise
            d = b.next_delay()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise
                d = min(d, left)
            sleep(d)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Breaker:
    """Health of one dependency, with the time of the next allowed attempt.

    Thread-safe. ``healthy`` is True until the first failure and again after the first
    success; ``last_error`` keeps the (redacted) text of the latest failure for logs.
    """

    name: str
    base_s: float = 0.2
    max_s: float = 5.0
    healthy: bool = True
    last_error: str | None = None
    failures: int = 0
    _backoff: Backoff = field(init=False)
    _next: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._backoff = Backoff(base_s=self.base_s, max_s=self.max_s)

    def due(self, now: float | None = None) -> bool:
        """True when an attempt may be made now (always while healthy)."""
        t = time.monotonic() if now is None else now
        return self.healthy or t >= self._next

    def ok(self) -> None:
        with self._lock:
            self.healthy = True
            self.failures = 0
            self.last_error = None
            self._backoff.reset()
            self._next = 0.0

    def failed(self, exc: BaseException | str) -> float:
        """Record a failure; returns the seconds until the next attempt is due."""
        from bqx.infra.redact import redact

        with self._lock:
            self.healthy = False
            self.failures += 1
            self.last_error = redact(str(exc).strip().splitlines()[0] if str(exc) else exc)
            d = self._backoff.next_delay()
            self._next = time.monotonic() + d
            return d

    def seconds_until_due(self) -> float:
        return 0.0 if self.healthy else max(0.0, self._next - time.monotonic())
