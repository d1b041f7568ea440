"""One monitoring pass: mature, drift, quality, alerts, purge (``bqx monitor run``).

Python API for the operator / rollout code::

    from bqx.monitoring import run_pass
    report = run_pass(settings)            # dict, JSON-ready

Alerts go to the state DB's alerts table (fingerprint de-dup): ``drift:<pair>:v<version>``
(warning/critical from the worst feature's KL) and ``quality_r2_drop:<pair>:v<version>``
(critical). An open alert of these rules whose condition no longer holds is resolved.
Notification delivery (webhook/SMTP) is not implemented yet.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from bqx.monitoring.baseline import BaselineMissingError
from bqx.monitoring.drift import DriftConfig, drift_report
from bqx.monitoring.mature import mature
from bqx.monitoring.quality import quality_report, reference_from_registry

if TYPE_CHECKING:
    from bqx.config import Settings

RULES = ("drift", "quality_r2_drop")


def _active_pairs(state: Any, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    d = state.read_decisions(None, start, end, by="asof_ts")
    return sorted(d["pair"].dropna().unique().tolist())


def monitor_reports(
    state: Any,
    registry: Any,
    *,
    pairs: list[str] | None = None,
    now: Any = None,
    cfg: DriftConfig = DriftConfig(),
) -> dict[str, Any]:
    """Drift and quality per pair (read-only; ``bqx monitor status``)."""
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    pairs = pairs or _active_pairs(state, end - pd.Timedelta("7D"), end)
    out: dict[str, Any] = {}
    for pair in pairs:
        try:
            drift: dict[str, Any] = drift_report(state, registry, pair, now=end, cfg=cfg)
        except BaselineMissingError as e:
            drift = {"pair": pair, "error": str(e), "versions": {}}
        try:
            ref = reference_from_registry(registry, pair)
        except Exception:  # registry down or no model: quality without a reference
            ref = {}
        out[pair] = {"drift": drift, "quality": quality_report(state, pair, reference=ref, now=end)}
    return out


def run_pass(
    settings: Settings,
    *,
    state: Any = None,
    store: Any = None,
    registry: Any = None,
    pairs: list[str] | None = None,
    now: Any = None,
    cfg: DriftConfig = DriftConfig(),
) -> dict[str, Any]:
    """Mature decisions, compute drift + quality, raise/resolve alerts, purge old captures."""
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.state import open_state

    t0 = time.perf_counter()
    state = state or open_state(settings)
    registry = registry or Registry(settings)
    own_store = store is None
    store = store or open_store(settings=settings)
    try:
        mat = mature(state, store, settings, now=now)
    finally:
        if own_store:
            store.close()
    t_mature = time.perf_counter() - t0
    reports = monitor_reports(state, registry, pairs=pairs, now=now, cfg=cfg)
    firing: set[str] = set()
    raised = []
    for pair, rep in reports.items():
        for ver, d in rep["drift"].get("versions", {}).items():
            sev = "critical" if d["critical"] else "warning" if d["warning"] else None
            if sev:
                fp = f"drift:{pair}:v{ver}"
                w = d["worst"]
                msg = (
                    f"{pair} v{ver}: {d['critical']} critical / {d['warning']} warning features;"
                    f" worst {w['feature']} KL={w['kl']:.3f} PSI={w['psi']:.3f}"
                )
                state.raise_alert("drift", msg, severity=sev, pair=pair, fingerprint=fp, at=now)
                firing.add(fp)
                raised.append(fp)
        for ver, wins in rep["quality"].get("versions", {}).items():
            for q in wins.values():
                if q.get("alert"):
                    fp = f"quality_r2_drop:{pair}:v{ver}"
                    a = q["alert"]
                    state.raise_alert(
                        "quality_r2_drop",
                        a["text"],
                        severity=a["severity"],
                        pair=pair,
                        fingerprint=fp,
                        at=now,
                    )
                    firing.add(fp)
                    raised.append(fp)
                    break
    resolved = []
    open_ = state.read_alerts(open_only=True)
    for fp, rule, pair in zip(open_["fingerprint"], open_["rule"], open_["pair"], strict=True):
        if rule in RULES and fp not in firing and (pairs is None or pair in pairs):
            state.resolve_alert(fp, at=now)
            resolved.append(fp)
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    purged = state.purge_captures(end - pd.Timedelta(days=settings.monitor.capture_retention_days))
    return {
        "mature": mat.as_dict(),
        "pairs": reports,
        "alerts": {"raised": raised, "resolved": resolved},
        "purged_captures": purged,
        "seconds": {"mature": t_mature, "total": time.perf_counter() - t0},
    }
