"""``bqx monitor status``: the newest monitoring pass, filtered to one pair, made readable."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bqx.monitoring.gauges import monitoring_status


def verdict(r2_drop: dict[str, Any] | None) -> str:
    """One word for an R²-drop verdict of :func:`bqx.monitoring.quality.r2_drop_verdict`."""
    v = r2_drop or {}
    if v.get("alert"):
        return "DROP (significant)"
    if v.get("inconclusive"):
        return "inconclusive"
    if v.get("drop") is None:
        return "-"
    return "lower, within 0.05" if v.get("significant") else "ok"


def pass_status(state: Any, pair: str | None = None) -> dict[str, Any]:
    """The newest pass (None before the first), open alerts and notifier failures; with
    ``pair`` only that pair's quality rows, drift row and alerts (pair-less alerts such as
    ``monitoring_failure`` are always kept)."""
    st = monitoring_status(state)
    st.pop("production", None)
    alerts = [
        {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in a.items()}
        for a in st["alerts"]
        if pair is None or a.get("pair") in (None, pair) or pd.isna(a.get("pair"))
    ]
    st["alerts"] = alerts
    st["open_alerts"] = {
        s: sum(1 for a in alerts if a["severity"] == s) for s in ("critical", "warning", "info")
    }
    run = st["run"]
    if run is not None:
        quality = [
            {**q, "verdict": verdict(q.get("r2_drop"))}
            for q in run.get("quality", [])
            if pair is None or q["pair"] == pair
        ]
        drift = [
            {
                "pair": p,
                **d,
                "worst_text": ", ".join(
                    f"{w['name']} {w['kl']:.3f}" if w.get("kl") is not None else str(w["name"])
                    for w in d.get("worst", [])[:3]
                ),
            }
            for p, d in sorted(run.get("drift", {}).items())
            if pair is None or p == pair
        ]
        run = {
            **run,
            "quality": quality,
            "drift": drift,
            "ran_at_iso": pd.Timestamp(run["ran_at"], unit="s", tz="UTC").isoformat(),
            "as_of_iso": pd.Timestamp(run["as_of"], unit="s", tz="UTC").isoformat(),
        }
    st["run"] = run
    st["pair"] = pair
    return st
