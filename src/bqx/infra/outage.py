"""Which exceptions are infrastructure failures, and how the API reports them.

An infrastructure failure (a server down, hung, refusing connections, a file lock held by
another process, the registry unreachable) is the server's problem, not the client's: the
API answers **503** with a stable error code, the component, a redacted address and
``Retry-After``, never 500 (a bug) and never 404 (the client asked for something missing).

:func:`classify` maps an exception to an :class:`Outage` (or None when it is not one). It
knows BQX's own typed errors (:class:`~bqx.errors.StoreError`, ``StateError``,
:class:`~bqx.errors.RegistryUnavailableError`) and, as a safety net for errors that escape
un-wrapped, the connection-level errors of psycopg/psycopg_pool, SQLAlchemy, DuckDB, MLflow
and requests, and ``TimeoutError``/``ConnectionError``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds a client should wait before retrying after a 503 (the reconnect backoff caps
#: at ~5 s, readiness is re-checked every 2 s).
RETRY_AFTER_S = 5

#: component -> (error code, message shown to clients). Stable: clients may switch on them.
COMPONENTS: dict[str, tuple[str, str]] = {
    "store": ("store_unavailable", "the bar store is unavailable; retry later"),
    "state": ("state_unavailable", "the state database is unavailable; retry later"),
    "registry": ("registry_unavailable", "the model registry is unavailable; retry later"),
    "database": ("database_unavailable", "a database is unavailable; retry later"),
    "dependency": ("dependency_unavailable", "a server dependency is unavailable; retry later"),
}


@dataclass(frozen=True)
class Outage:
    component: str  # key of COMPONENTS
    code: str
    message: str
    retry_after_s: int = RETRY_AFTER_S


def _outage(component: str) -> Outage:
    code, msg = COMPONENTS[component]
    return Outage(component, code, msg)


def classify(exc: BaseException) -> Outage | None:
    """The outage ``exc`` represents, or None for anything else (bugs, bad input)."""
    from bqx.errors import RegistryUnavailableError, StoreError
    from bqx.state import StateError

    if isinstance(exc, StoreError):
        return _outage("store")
    if isinstance(exc, StateError):
        return _outage("state")
    if isinstance(exc, RegistryUnavailableError):
        return _outage("registry")
    mod = type(exc).__module__ or ""
    name = type(exc).__name__
    if mod.startswith(("psycopg", "psycopg_pool")) and name in (
        "OperationalError",
        "InterfaceError",
        "PoolTimeout",
        "PoolClosed",
        "ConnectionTimeout",
        "QueryCanceled",
    ):
        return _outage("database")
    if mod.startswith("sqlalchemy") and name in (
        "OperationalError",
        "InterfaceError",
        "DisconnectionError",
        "TimeoutError",
    ):
        return _outage("state")
    if mod.startswith(("duckdb", "_duckdb")) and name in ("IOException", "ConnectionException"):
        return _outage("store")
    if mod.startswith("mlflow") and not _mlflow_missing(exc):
        return _outage("registry")
    if mod.startswith(("requests", "urllib3")) and ("Connection" in name or "Timeout" in name):
        return _outage("registry")
    if isinstance(exc, TimeoutError | ConnectionError):
        return _outage("dependency")
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying (the same set :func:`classify` calls outages)."""
    return classify(exc) is not None


#: MLflow error codes that mean "what you asked for does not exist / is not a valid name"
#: (the client's problem: 404/422), as opposed to the registry failing.
MLFLOW_MISSING_CODES = frozenset(
    {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
)


def _mlflow_missing(exc: BaseException) -> bool:
    code = str(getattr(exc, "error_code", "") or "")
    return code in MLFLOW_MISSING_CODES


def mlflow_not_found(exc: BaseException) -> bool:
    """True when an MLflow exception says "this model/version/alias does not exist".

    Anything else from MLflow (server down, auth, a locked SQLite backend, a timeout) is an
    outage of the registry: :class:`~bqx.errors.RegistryUnavailableError` -> 503.
    """
    if _mlflow_missing(exc):
        return True
    text = str(exc).lower()
    # the SQL store raises RESOURCE_DOES_NOT_EXIST; some versions word an unknown alias so
    return "not found" in text and "alias" in text and "connection" not in text
