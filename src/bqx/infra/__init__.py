"""Infrastructure plumbing shared by every component that talks to a server.

* :mod:`bqx.infra.retry` -- bounded exponential backoff (:class:`Backoff`, :func:`retry`) and
  :class:`Breaker`, the small "is this dependency up, and when may I try again" state that a
  long-lived client (bar store, state DB, registry, broker, notifier) keeps so that it
  reconnects by itself after an outage without hammering the server.
* :mod:`bqx.infra.redact` -- the one function that hides secrets in URLs and messages
  (:func:`redact`), and :func:`public_address` for what an API response may show.
* :mod:`bqx.infra.outage` -- which exceptions are infrastructure failures (-> HTTP 503 with a
  stable code, the component and ``Retry-After``), never 500 and never 404.
* :mod:`bqx.infra.crash` -- named crash points for fault tests (``BQX_CRASH_AT``).
* :mod:`bqx.infra.pgtemp` -- a throw-away PostgreSQL server on a free port, for fault drills.

See docs/operations.md for the failure modes and what the operator sees.
"""

from bqx.infra.redact import public_address, redact
from bqx.infra.retry import Backoff, Breaker, retry

__all__ = ["Backoff", "Breaker", "public_address", "redact", "retry"]
