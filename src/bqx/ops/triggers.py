"""Retraining triggers and the retrain itself.

Triggers (each recorded once in the state DB's trigger ledger under a unique key, so a
restarted or failed-over operator never retrains twice for one trigger):

* ``drift`` / ``quality``: an open *critical* alert of a rule in ``ops.drift_rules`` /
  ``ops.quality_rules`` (key ``alert:<id>``; monitoring raises them, and
  :func:`check_quality` raises ``quality_drop``);
* ``schedule``: every ``ops.retrain_every_days`` since the pair's last retrain or its
  production version's registration (key ``schedule:<pair>:<period start>``);
* ``manual``: ``bqx retrain --pairs`` / ``POST /v1/ops/retrain`` (key ``manual:<uuid>``).

A retrain uses the latest ``ops.retrain_months`` of bars and the production training code
(:func:`bqx.training.train.train_frame` with the ``[train]`` settings), registers the
version with its trigger, data window and parent version as registry tags, then runs the
gate (:mod:`bqx.ops.gate`) and, when it passes and the version is approved, starts a
rollout (shadow first). A training failure raises a critical alert and leaves production
untouched.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import numpy as np
import pandas as pd

from bqx.universe import normalize_pair

log = logging.getLogger(__name__)

RETRAIN_FAILED_RULE = "retrain_failed"
QUALITY_RULE = "quality_drop"


def manual_key() -> str:
    return f"manual:{uuid.uuid4()}"


def retrain(ctx: Any, trigger_id: int, holder: str) -> dict[str, Any]:
    """Run one claimed trigger: train, register, record. ``ctx`` has settings, state,
    registry and store (an :class:`~bqx.ops.operator.Operator`)."""
    from bqx.ops.data import features_window
    from bqx.registry import model_name
    from bqx.training.train import train_frame, training_market

    s, st, reg = ctx.settings, ctx.state, ctx.registry
    tr = st.get_trigger(trigger_id)
    assert tr is not None
    pair = tr["pair"]
    cause = dict(tr.get("detail") or {})  # e.g. the alert id: kept with the results
    parent = reg.production_version(pair)
    try:
        latest = ctx.store.latest([pair]).get(pair)
        if latest is None:
            raise RuntimeError(f"no {pair} bars in the store")
        start = latest - pd.DateOffset(months=s.ops.retrain_months)
        df = features_window(ctx.store, s, pair, start, latest)
        market = training_market(pair, s, df.index)  # the feature store's, where it has them
        result = train_frame(pair, df, s, model=s.train.model, n_jobs=1, market=market)
        window = result.artifact.data_window
        v = reg.log_and_register(result, actor=f"operator:{tr['kind']}")
        c = reg.client
        for k, val in (
            ("trigger", tr["kind"]),
            ("trigger_key", tr["trigger_key"]),
            ("trigger_id", str(trigger_id)),
            ("parent_version", str(parent)),
            ("data_start", str(df.index[0].isoformat())),
            ("data_end", str(df.index[-1].isoformat())),
        ):
            c.set_model_version_tag(model_name(pair), v, k, val)
    except Exception as e:
        log.exception("retrain of %s failed", pair)
        st.finish_trigger(
            trigger_id, "failed", parent_version=parent, detail={**cause, "error": str(e)}
        )
        st.raise_alert(
            RETRAIN_FAILED_RULE,
            f"{pair}: retraining for trigger {tr['trigger_key']} failed: {e}; production "
            f"(v{parent}) untouched",
            severity="critical",
            pair=pair,
            fingerprint=f"{RETRAIN_FAILED_RULE}:{trigger_id}",
        )
        return {"trigger_id": trigger_id, "pair": pair, "status": "failed", "error": str(e)}
    st.finish_trigger(
        trigger_id,
        "done",
        version=v,
        parent_version=parent,
        data_start=df.index[0],
        data_end=df.index[-1],
        detail={**cause, "data_window": window, "approved": result.approved,
                "approval_reason": result.approval_reason},
    )  # fmt: skip
    return {"trigger_id": trigger_id, "pair": pair, "status": "done", "version": v,
            "parent_version": parent}  # fmt: skip


def follow_up(ctx: Any, tr: dict[str, Any]) -> dict[str, Any]:
    """After a successful retrain: the gate, then a rollout when it passes. Idempotent:
    the gate report is stored in the trigger's detail and a rollout is started at most once
    per trigger (the rollouts table records the trigger id)."""
    from bqx.ops.gate import evaluate_gate
    from bqx.registry import APPROVED
    from bqx.rollout import RolloutError

    st = ctx.state
    pair, v = tr["pair"], tr["version"]
    detail = dict(tr.get("detail") or {})
    gate = detail.get("gate")
    if gate is None:
        rep = evaluate_gate(ctx.settings, pair, v, registry=ctx.registry, store=ctx.store)
        gate = rep.as_dict()
        detail["gate"] = gate
        ctx.state.update_trigger_detail(tr["id"], detail)
    out: dict[str, Any] = {"trigger_id": tr["id"], "pair": pair, "version": v, "gate": gate}
    if not gate["passed"]:
        st.raise_alert(
            "gate_failed",
            f"{pair}: candidate v{v} failed the gate: {gate['reason']}",
            severity="warning",
            pair=pair,
            fingerprint=f"gate_failed:{tr['id']}",
        )
        detail["rollout"] = "not started: gate failed"
        ctx.state.update_trigger_detail(tr["id"], detail)
        return out
    if not ctx.settings.ops.auto_rollout:
        detail["rollout"] = "not started: ops.auto_rollout is off"
    elif ctx.registry.get(pair, v).approval_status != APPROVED:
        detail["rollout"] = f"not started: v{v} awaits approval"
    elif any(r.get("trigger_id") == tr["id"] for r in st.rollouts(pair, limit=20)):
        detail["rollout"] = "started"
    else:
        try:
            ro = ctx.rollouts.start(
                pair, v, actor="operator", trigger_id=tr["id"], gate=gate,
                reason=f"{tr['kind']} retrain (trigger {tr['trigger_key']}); gate: "
                f"{gate['reason']}",
            )  # fmt: skip
            detail["rollout"] = "started"
            out["rollout_id"] = ro["id"]
        except RolloutError as e:
            detail["rollout"] = f"not started: {e.message}"
    ctx.state.update_trigger_detail(tr["id"], detail)
    out["rollout"] = detail["rollout"]
    return out


def check_quality(ctx: Any, pair: str) -> dict[str, Any]:
    """Matured live R² of the production version vs its test R² (registry tag).

    A drop of more than ``ops.quality_drop`` whose HAC upper bound is still below
    ``test_r2 - quality_drop`` (i.e. significant) raises a critical ``quality_drop``
    alert. Uses the production arm's decisions of the last ``2 x quality_min_samples``
    as-of bars."""
    from bqx.rollout.quality import realized_targets
    from bqx.stats import r2_estimate

    s = ctx.settings
    pair = normalize_pair(pair)
    prod = ctx.registry.production_version(pair)
    if prod is None:
        return {"pair": pair, "skipped": "no production version"}
    info = ctx.registry.get(pair, prod)
    dec = ctx.state.read_decisions(pair, limit=20 * s.ops.quality_min_samples)
    if len(dec):
        dec = dec[(dec["model_version"] == str(prod)) & dec["asof_ts"].notna()]
        dec = dec[dec["extra"].apply(lambda e: (e or {}).get("arm") != "shadow")]
    if not len(dec):
        return {"pair": pair, "n": 0}
    per_bar = dec.groupby("asof_ts")["prediction"].mean()
    per_bar.index = pd.DatetimeIndex(per_bar.index)
    y = realized_targets(ctx.store, s, pair, per_bar.index).to_numpy(float)
    p = per_bar.to_numpy(float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok][-2 * s.ops.quality_min_samples :], p[ok][-2 * s.ops.quality_min_samples :]
    out: dict[str, Any] = {"pair": pair, "version": prod, "n": len(y), "test_r2": info.test_r2}
    if len(y) < s.ops.quality_min_samples:
        out["status"] = "too few matured samples"
        return out
    est = r2_estimate(y, p, horizon=s.horizon)
    out.update(live_r2=est.value, live_r2_hi=est.hi)
    limit = info.test_r2 - s.ops.quality_drop
    if np.isfinite(info.test_r2) and est.finite and est.hi < limit:
        ctx.state.raise_alert(
            QUALITY_RULE,
            f"{pair}: live R² of v{prod} is {est.value:.3f} (95 % upper {est.hi:.3f}) on "
            f"{len(y)} matured bars vs test R² {info.test_r2:.3f}: dropped by more than "
            f"{s.ops.quality_drop:g}",
            severity="critical",
            pair=pair,
        )
        out["status"] = "alert"
    else:
        out["status"] = "ok"
    return out
