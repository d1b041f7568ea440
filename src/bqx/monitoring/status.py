"""``bqx monitor status``: per pair, what the last monitoring passes saw.

Read-only and cheap: versions from the registry (one query), the newest passes'
summaries from ``monitor_runs`` (nothing is recomputed), open alerts and notifier
delivery failures from the state DB.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: How many recent passes are searched for a pair's latest figures.
LOOKBACK_RUNS = 50


def monitor_status(state: Any, registry: Any = None, pair: str | None = None) -> dict[str, Any]:
    """JSON-ready status: ``{"last_pass": {...}|None, "pairs": [...], "notifiers": {...}}``.

    Per pair: production and candidate (active rollout) version, the time of the last pass
    that covered it, live quality per version and window (R² and DA estimates with se and
    n_eff), the worst drift, open alerts (count, by severity) and notifier failures."""
    from bqx.registry import PRODUCTION
    from bqx.universe import normalize_pair

    only = normalize_pair(pair) if pair else None
    runs = state.monitor_runs(limit=LOOKBACK_RUNS)
    prod: dict[str, str] = {}
    if registry is not None:
        try:
            for v in registry.versions(only):
                if PRODUCTION in (v.aliases or []):
                    prod[v.pair] = str(v.version)
        except Exception as e:  # the registry being down must not hide monitoring
            log.warning("registry unavailable for status: %s", e)
    cand = {str(r["pair"]): str(r["candidate_version"]) for r in state.active_rollouts()}
    alerts = state.read_alerts(open_only=True, pair=only)
    nf = state.notifier_failures()
    seen: dict[str, tuple[Any, dict[str, Any]]] = {}
    for r in runs:  # newest first: the first pass that covered a pair is its latest
        for p, d in ((r.get("summary") or {}).get("pairs") or {}).items():
            if p not in seen:
                seen[p] = (r["as_of"], d)
    pairs = set(prod) | set(cand) | set(seen) | {str(p) for p in alerts["pair"].dropna()}
    if only:
        pairs = {only}
    rows = []
    for p in sorted(pairs):
        at, d = seen.get(p, (None, {}))
        al = alerts[alerts["pair"] == p]
        rows.append(
            {
                "pair": p,
                "production": prod.get(p),
                "candidate": cand.get(p),
                "last_pass_at": at.isoformat() if at is not None else None,
                "quality": d.get("quality") or {},
                "drift": d.get("drift"),
                "open_alerts": len(al),
                "open_by_severity": {
                    str(k): int(v) for k, v in al["severity"].value_counts().items()
                },
                "notifier_failures": int(nf["by_pair"].get(p, 0)),
            }
        )
    last = runs[0] if runs else None
    return {
        "last_pass": None
        if last is None
        else {
            "started_at": last["started_at"].isoformat(),
            "as_of": last["as_of"].isoformat(),
            "seconds": last["seconds"],
            "ok": bool(last["ok"]),
            "errors": last["errors"] or [],
        },
        "pairs": rows,
        "open_alerts_unpaired": int(alerts["pair"].isna().sum()) if only is None else 0,
        "notifiers": nf["by_notifier"],
    }
