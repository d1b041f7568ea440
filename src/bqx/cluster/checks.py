"""Where every piece of state lives, and a start-up check for cluster mode.

Cluster mode means at least one piece of state is already shared (a PostgreSQL store or state
database, an MLflow server, a Ray cluster): then anything still on this machine's disk is
probably a mistake (another API replica or node would not see it), so :func:`state_report`
lists it and :func:`warn_local_state` prints one warning per piece. docs/cluster.md has the
same table for people.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bqx.cluster.executor import ClusterError, check_tcp, ray_address
from bqx.config import Settings


@dataclass(frozen=True)
class StatePiece:
    name: str
    setting: str
    where: str
    shared: bool
    #: what goes wrong when it stays local in cluster mode
    consequence: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def state_report(s: Settings) -> list[StatePiece]:
    """Every piece of state BQX keeps, where it is for these settings, and whether it is
    shared by all nodes and replicas."""
    store = s.resolved_store_url
    state = s.resolved_state_url
    track = s.resolved_tracking_uri
    optuna = s.resolved_optuna_url
    pg = ("postgresql://", "postgres://", "postgresql+psycopg://")
    return [
        StatePiece(
            "bars",
            "store_url (BQX_STORE_URL)",
            store,
            store.startswith(pg),
            "pushed bars seen by one replica only; Ray tasks cannot read them",
        ),
        StatePiece(
            "keys, decisions, promotion history, alerts",
            "state_url (BQX_STATE_URL)",
            state,
            state.startswith(pg),
            "a key created or revoked on one replica is unknown to the others",
        ),
        StatePiece(
            "model registry and runs",
            "tracking_uri (BQX_TRACKING_URI)",
            track,
            _is_http(track) or track.startswith(pg),
            "replicas serve different production versions",
        ),
        StatePiece(
            "model artifacts",
            "tracking_uri: mlflow server --serve-artifacts",
            "proxied by the MLflow server" if _is_http(track) else str(s.artifact_root),
            _is_http(track),
            "other hosts cannot load the registered models",
        ),
        StatePiece(
            "Optuna studies",
            "optuna_url (BQX_OPTUNA_URL)",
            optuna,
            optuna.startswith(pg) or optuna.startswith("mysql"),
            "tuning trials on Ray workers cannot share one study",
        ),
        StatePiece(
            "rate-limit buckets",
            "serve.rate_limit_url (BQX_SERVE__RATE_LIMIT_URL)",
            s.serve.rate_limit_url or "per worker process (memory)",
            s.serve.rate_limit_url is not None,
            "a key gets the limit once per replica and worker",
        ),
        StatePiece(
            "feature store (derived, rebuildable)",
            "home (BQX_HOME)",
            str(s.features_dir),
            True,
            "none: each node builds its own from the bar store",
        ),
    ]


def cluster_mode(s: Settings) -> bool:
    """True when some state is already shared, so local leftovers are probably mistakes."""
    shared = [p.shared for p in state_report(s)[:4]]
    return any(shared) or ray_address(s) is not None


def local_state_warnings(s: Settings) -> list[str]:
    """One line per piece of state left on local disk/memory in cluster mode (else none)."""
    if not cluster_mode(s):
        return []
    return [
        f"cluster mode, but {p.name} is local: {p.setting} = {p.where} ({p.consequence})"
        for p in state_report(s)
        if not p.shared
    ]


def warn_local_state(s: Settings, echo: Any = None) -> list[str]:
    """Print (``echo``, default stderr) and return the warnings of :func:`local_state_warnings`."""
    import sys

    lines = local_state_warnings(s)
    for line in lines:
        (echo or (lambda m: print(m, file=sys.stderr)))(f"warning: {line}")
    return lines


def check_tracking(s: Settings, timeout: float = 5.0) -> None:
    """An MLflow server that does not answer ``/health`` fails now with the setting and the
    address (MLflow's own client retries for minutes and then prints a traceback)."""
    uri = s.resolved_tracking_uri
    if not _is_http(uri):
        return
    import urllib.error
    import urllib.request

    check_tcp(
        "tracking_uri (BQX_TRACKING_URI)", uri, default_port=80 if uri.startswith("http:") else 443
    )
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status == 200:
                return
            problem = f"HTTP {r.status}"
    except urllib.error.URLError as e:
        problem = str(e.reason) if hasattr(e, "reason") else str(e)
    except OSError as e:
        problem = str(e)
    raise ClusterError(
        f"tracking_uri (BQX_TRACKING_URI) = {uri}: the MLflow server does not answer "
        f"/health ({problem})",
        hint="start it (`mlflow server --serve-artifacts ...`, see deploy/) or fix the URI",
    )


def ray_env_address() -> str | None:
    """``RAY_ADDRESS`` as Ray itself would read it (for ``bqx config show``)."""
    return os.environ.get("RAY_ADDRESS")
