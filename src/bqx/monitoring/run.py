"""One monitoring pass: mature, input drift, live quality (R²-drop rule), alerts, purge.

:func:`run_pass` is the entry point for ``bqx monitor run`` and the operator loop. A pass
over an empty decision log returns an empty, valid report. Failures of a step are caught,
reported in the report's ``errors`` and raised as a critical ``monitoring_failure`` alert
(monitoring never dies of one bad pair).
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import numpy as np
import pandas as pd

from bqx.monitoring.alerts import AlertManager, Condition
from bqx.monitoring.mature import mature
from bqx.monitoring.notifiers import Notifier
from bqx.monitoring.quality import quality_report

log = logging.getLogger(__name__)


def test_metrics_by_version(registry: Any, pairs: list[str]) -> dict[str, dict[str, dict]]:
    """``{pair: {version: {"r2": test R², "da": test DA}}}`` from the registry."""
    out: dict[str, dict[str, dict]] = {}
    for p in pairs:
        try:
            vs = registry.versions(p)
        except Exception:
            log.warning("registry unavailable for %s", p, exc_info=True)
            continue
        out[p] = {str(v.version): {"r2": v.test_r2, "da": v.test_da} for v in vs}
    return out


def quality_conditions(report: dict[str, Any], window: str = "1d") -> list[Condition]:
    """One ``quality_r2_drop`` condition per (pair, version) over ``window``."""
    conds = []
    for r in report["rows"]:
        if r["window"] != window:
            continue
        v = r["r2_drop"]
        fp = f"quality_r2_drop:{r['pair']}:{r['model_version']}"
        if v["drop"] is None:
            continue
        m = r["metrics"]["r2"]
        msg = (
            f"live R² {m['value']:.3f} (se {m['se']:.3f}, n_eff {m['n_eff']:.0f}) vs test "
            f"{r['test'].get('r2', float('nan')):.3f}: drop {v['drop']:.3f}, "
            + ("statistically significant" if v["significant"] else "within noise")
        )
        conds.append(Condition("quality_r2_drop", v["alert"], msg, "critical", r["pair"], fp))
    return conds


#: The decision-log columns live quality reads (:func:`bqx.monitoring.quality.quality_report`).
QUALITY_COLUMNS = (
    "decision_id",
    "pair",
    "asof_ts",
    "horizon",
    "prediction",
    "interval_lo",
    "interval_hi",
    "model_version",
    "realized_target",
)
#: Live metrics kept in a pass summary (name in ``quality_report`` -> summary key).
SUMMARY_METRICS = ("r2", "da", "coverage")
#: Worst features per pair kept in a pass summary (the dashboard's drift heatmap).
SUMMARY_TOP_FEATURES = 5
_SEV_RANK = {"insufficient": -1, "ok": 0, "warning": 1, "critical": 2}


def _kl(c: dict[str, Any]) -> float:
    return float(c["kl"]) if c.get("kl") is not None else -1.0


def _drift_rank(row: dict[str, Any]) -> tuple[int, float]:
    return _SEV_RANK.get(row["severity"], -1), (_kl(row["worst"][0]) if row["worst"] else -1.0)


def summarize(report: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """The compact, bounded summary of a pass that is stored in ``monitor_runs`` and read
    by the service's gauges and dashboard: per pair the drift verdict of its worst-drifting
    served version with that version's :data:`SUMMARY_TOP_FEATURES` worst features (by
    severity, then KL); per (pair, version, window) live R², DA and coverage (each value,
    se, n_eff, interval), the test R² and the R²-drop verdict."""
    drift: dict[str, dict[str, Any]] = {}
    for rep in (report.get("drift") or {}).get("pairs", []):
        p = str(rep["pair"])
        cols = sorted(
            rep["columns"], key=lambda c: (_SEV_RANK.get(c["severity"], -1), _kl(c)), reverse=True
        )
        row = {
            "model_version": str(rep["model_version"]),
            "n": int(rep["n"]),
            "severity": rep["severity"],
            "over_warning": int(rep["over_warning"]),
            "over_critical": int(rep["over_critical"]),
            "n_features": len(rep["columns"]),
            "worst": [
                {"name": c["name"], "kl": c["kl"], "severity": c["severity"]}
                for c in cols[:SUMMARY_TOP_FEATURES]
            ],
        }
        prev = drift.get(p)
        if prev is None or _drift_rank(row) > _drift_rank(prev):
            drift[p] = row
    quality = []
    for r in (report.get("quality") or {}).get("rows", []):
        m = r["metrics"]
        quality.append(
            {
                "pair": r["pair"],
                "model_version": r["model_version"],
                "window": r["window"],
                "n": int(r["n"]),
                **{k: m.get(k) for k in SUMMARY_METRICS},
                "test_r2": (r.get("test") or {}).get("r2"),
                "r2_drop": r["r2_drop"],
            }
        )
    no_base = (report.get("drift") or {}).get("no_baseline", [])
    return {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "drift": drift,
        "no_baseline": [{k: str(v) for k, v in x.items()} for x in no_base],
        "quality": quality,
        "mature": report.get("mature"),
        "errors": list(report.get("errors", [])),
    }


def drift_pass(
    state: Any,
    registry: Any,
    end: pd.Timestamp,
    window: pd.Timedelta = pd.Timedelta(hours=24),
    pair: str | None = None,
) -> tuple[dict[str, Any], list[Condition]]:
    """Drift of the captured model inputs of the last ``window`` of served bars against each
    (pair, version)'s frozen training baseline. Severity warning/critical raises a ``drift``
    alert per pair (the operator's retraining trigger reads critical ones); a version with
    no baseline is reported, not an error (``bqx monitor baseline PAIR VERSION`` makes one).
    """
    from bqx.monitoring.baseline import BaselineMissingError, load_baseline, parse_baseline
    from bqx.monitoring.drift import MARKET_VOL, drift_report

    cap = state.read_captures(pair, end - window, end)
    out: dict[str, Any] = {"pairs": [], "no_baseline": []}
    conds: list[Condition] = []
    if cap.empty:
        return out, conds
    meta = {"decision_id", "pair", "asof_ts", "model_version"}
    feats = [c for c in cap.columns if c not in meta]
    X = cap[feats].to_numpy(np.float64)  # one matrix; each group's rows in asof_ts order
    worst_by_pair: dict[str, tuple[str, str]] = {}
    for key, pos in sorted(cap.groupby(["pair", "model_version"]).indices.items()):
        p, version = cast(tuple[Any, Any], key)
        try:
            base = parse_baseline(load_baseline(registry, str(p), str(version)))
        except BaselineMissingError:
            out["no_baseline"].append({"pair": p, "model_version": version})
            continue
        Xg = X[pos]
        win = {c: Xg[:, j] for j, c in enumerate(feats) if c in base}
        mv = win.get(MARKET_VOL)
        if mv is not None:
            # the market column is captured only since it existed (rows captured before are
            # NaN): not a missing-value jump; test the captured stretch (none: absent)
            fin = np.flatnonzero(np.isfinite(mv))
            if len(fin):
                win[MARKET_VOL] = mv[fin[0] :]
            else:
                del win[MARKET_VOL]
        rep = drift_report(base, win)
        rep.update(pair=p, model_version=version, n=len(pos))
        out["pairs"].append(rep)
        w = rep.get("worst") or {}
        msg = (
            f"{rep['over_critical']} critical / {rep['over_warning']} warning features "
            f"(v{version}); worst {w.get('name')} KL {w.get('kl')}"
        )
        joint = [
            f"{label} window z {t['z']} p {t['p']:.2g}"
            for label, t in (rep.get("pair_test") or {}).items()
            if t.get("significant")
        ]
        mk = [
            f"market {name} level x{t['ratio']:.2f} of training (z {t['z']:.1f}, p {t['p']:.2g})"
            for name, t in (rep.get("market") or {}).items()
            if t.get("significant")
        ]
        if mk:
            msg += "; " + ", ".join(mk)
        if joint:
            # The pair-level test can escalate a pair whose features are each within noise:
            # say so, or the alert reads "0 critical" while being critical.
            msg += "; features drifted jointly (" + ", ".join(joint) + ")"
        prev = worst_by_pair.get(str(p))
        rank = {"ok": 0, "warning": 1, "critical": 2}
        if prev is None or rank.get(rep["severity"], 0) > rank.get(prev[0], 0):
            worst_by_pair[str(p)] = (rep["severity"], msg)
    for wp, (sev, msg) in worst_by_pair.items():
        firing = sev in ("warning", "critical")
        conds.append(
            Condition("drift", firing, msg, sev if firing else "warning", wp, f"drift:{wp}")
        )
    return out, conds


def run_pass(
    state: Any,
    store: Any = None,
    registry: Any = None,
    *,
    notifiers: list[Notifier] | None = None,
    now: Any = None,
    lookback: pd.Timedelta = pd.Timedelta(days=8),
    retention: pd.Timedelta | None = pd.Timedelta(days=30),
    monitor: Any = None,
    ops_now: Any = None,
) -> dict[str, Any]:
    """Mature pending decisions, compute live quality per (pair, version), input drift,
    the operational rules (5xx rate, p99 latency: :mod:`bqx.monitoring.opsrules`),
    evaluate alert rules and deliver notices; record the pass (``monitor_runs``, what
    ``bqx monitor status`` shows). Returns a JSON-ready report.

    ``monitor``: :class:`bqx.config.MonitorSettings` (defaults when None). ``now`` ends
    the live windows of quality and drift (may be a replayed past); the operational rules
    look at the service's recent requests, so they end at ``ops_now`` (default: the clock).
    """
    from bqx.config import MonitorSettings

    cfg = monitor if monitor is not None else MonitorSettings()
    t0 = time.perf_counter()
    errors: list[str] = []
    report: dict[str, Any] = {"mature": None, "quality": {"rows": []}, "alerts": None}
    conds: list[Condition] = []
    if store is not None:
        try:
            report["mature"] = mature(state, store).as_dict()
        except Exception as e:
            errors.append(f"mature: {type(e).__name__}: {e}")
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    try:
        dec = state.read_decisions(start=end - lookback, by="asof_ts", columns=QUALITY_COLUMNS)
        if not dec.empty:
            pairs = sorted(dec["pair"].unique())
            tm_all = test_metrics_by_version(registry, pairs) if registry is not None else {}
            tm = {v: m for p in tm_all.values() for v, m in p.items()}
            rows = []
            for p, g in dec.groupby("pair"):
                rows += quality_report(g, now=end, test_metrics=tm_all.get(str(p), tm))["rows"]
            report["quality"] = {"rows": rows}
            conds += quality_conditions(report["quality"])
    except Exception as e:
        errors.append(f"quality: {type(e).__name__}: {e}")
    if registry is not None and hasattr(state, "read_captures"):
        try:
            report["drift"], dconds = drift_pass(state, registry, end)
            conds += dconds
        except Exception as e:
            errors.append(f"drift: {type(e).__name__}: {e}")
    if hasattr(state, "read_service_stats"):
        from bqx.monitoring.opsrules import ops_conditions

        clock = pd.Timestamp(ops_now) if ops_now is not None else pd.Timestamp.now(tz="UTC")
        try:
            report["ops"], oconds = ops_conditions(state, cfg, clock)
            conds += oconds
            state.purge_service_stats(clock - pd.Timedelta(hours=cfg.stats_retention_h))
        except Exception as e:
            errors.append(f"ops: {type(e).__name__}: {e}")
    if retention is not None and hasattr(state, "purge_captures"):
        try:
            report["purged_captures"] = state.purge_captures(end - retention)
        except Exception as e:
            errors.append(f"purge: {type(e).__name__}: {e}")
    conds.append(
        Condition("monitoring_failure", bool(errors), "; ".join(errors) or "ok", "critical")
    )
    from datetime import timedelta

    from bqx.monitoring.notifiers import notifiers_from_settings

    am = AlertManager(
        state,
        notifiers if notifiers is not None else notifiers_from_settings(cfg),
        repeat_interval=timedelta(hours=cfg.repeat_interval_h),
    )
    report["alerts"] = am.evaluate(conds, at=end)
    report["errors"] = errors
    report["seconds"] = time.perf_counter() - t0
    if hasattr(state, "record_monitor_run"):  # what the service's gauges and dashboard read
        try:
            import json

            from bqx.jsonutil import dumps
            from bqx.state.monitor_runs import RUN_RETENTION_DAYS

            summary = json.loads(dumps(summarize(report, end), indent=None))
            report["run_id"] = state.record_monitor_run(
                summary, as_of=end, seconds=report["seconds"], errors=len(errors)
            )
            state.purge_monitor_runs(
                pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=RUN_RETENTION_DAYS)
            )
        except Exception:
            log.warning("could not record the monitoring pass summary", exc_info=True)
    return report
