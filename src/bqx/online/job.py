"""One online update of a pair's production version, end to end, on the operator's rails.

Rows: the most recent matured bars (target known), oldest to newest::

    | fit (≤ online.window_bars) | gap | calibration | gap | check (online.check_bars) |

gaps are ``horizon + 1`` bars (targets overlap). The update fits on *fit* only
(:func:`bqx.online.update.update_pipeline`); the shrinkage β and the conformal intervals
are recalibrated on *calibration* (out of sample for the update); *check* is never used for
fitting or calibration. The version records ``train`` = fit and ``val`` = calibration as
its data window, so the evaluation gate (:func:`bqx.ops.gate.evaluate_gate`, which scores
only bars after both versions' windows plus a purge gap) scores it on *check*.

Then:

1. registered as a new version (pending approval) with tags ``trigger=online``,
   ``parent_version``, ``data_start``/``data_end`` and ``online_method``;
2. **stability check**: the gate's paired, overlap-aware Diebold-Mariano test of the
   update against its **parent** (``evaluate_gate(..., production=parent)``); significantly
   worse (one-sided p < ``ops.gate_alpha``), too few bars or non-finite forecasts = rejected:
   the version is marked Rejected in the registry (it can never be promoted) and the pair's
   rejection streak grows; at ``online.max_rejections`` in a row online learning pauses for
   the pair with a warning alert ``online_paused`` (``bqx online enable`` resumes);
3. an update whose forecasts on the check window equal its parent's (both shrunk to "no
   view", β = 0, as on a market without signal) is ``unchanged``: not registered, no
   rollout, the streak untouched;
4. accepted: the version inherits the parent's approval (an online update of an approved
   version is approved by the stability check, not by the training approval rule, whose
   confidence test needs more rows than the check segment has) and its trigger is left to
   the operator's ordinary follow-up (:func:`bqx.ops.triggers.follow_up`): the evaluation
   gate against the *current* production version, then a rollout, shadow first. Nothing
   here promotes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bqx.errors import BqxError, NoDataError
from bqx.universe import normalize_pair

log = logging.getLogger(__name__)

PAUSED_RULE = "online_paused"
FAILED_RULE = "online_failed"
REJECTED_ROLLOUT = "not started: stability check rejected the update"


@dataclass
class OnlineCandidate:
    """An updated artifact, not yet registered."""

    pair: str
    parent: str
    result: Any  # TrainResult
    info: dict[str, Any]
    windows: dict[str, list[str]]
    seconds: dict[str, float] = field(default_factory=dict)


def _segments(n: int, settings: Any) -> tuple[slice, slice, slice]:
    o = settings.online
    gap = settings.horizon + 1
    k_end = n
    k0 = k_end - o.check_bars
    c1 = k0 - gap
    c0 = c1 - o.calibration_bars
    f1 = c0 - gap
    f0 = max(0, f1 - o.window_bars)
    if f1 - f0 < 100:
        raise NoDataError(
            f"too few matured rows for an online update: {n} (need fit >= 100 + calibration "
            f"{o.calibration_bars} + check {o.check_bars} + 2 gaps of {gap})",
            hint="wait for more bars, or lower online.calibration_bars / online.check_bars",
        )
    return slice(f0, f1), slice(c0, c1), slice(k0, k_end)


def matured_rows(ctx: Any, pair: str, as_of: Any = None) -> pd.DataFrame:
    """The latest matured rows (features + target) of ``pair`` up to ``as_of``."""
    from bqx.ops.data import features_window
    from bqx.training.train import prepare

    s, o = ctx.settings, ctx.settings.online
    end = pd.Timestamp(as_of) if as_of is not None else ctx.store.latest([pair]).get(pair)
    if end is None:
        raise NoDataError(f"no {pair} bars in the store")
    need = o.window_bars + o.calibration_bars + o.check_bars + 3 * (s.horizon + 1)
    start = end - pd.Timedelta(s.interval) * int(need * 1.6) - pd.Timedelta(days=3)
    df = features_window(ctx.store, s, pair, start, end)
    if not len(df):
        raise NoDataError(f"no {pair} bars between {start} and {end}")
    return prepare(df).iloc[-need:]


def build_update(ctx: Any, pair: str, *, as_of: Any = None) -> OnlineCandidate:
    """Update the production version of ``pair`` on its latest matured rows (no I/O but
    reads). ``ctx`` has settings, registry and store (an Operator or :class:`Context`)."""
    from bqx.monitoring.baseline import market_at, training_baseline
    from bqx.online.update import update_pipeline
    from bqx.training.intervals import SCALE_FEATURE, calibrate, coverage
    from bqx.training.metrics import baselines, regression_metrics
    from bqx.training.shrinkage import fit_shrinkage
    from bqx.training.train import TrainResult, training_market, uncertainty

    s = ctx.settings
    pair = normalize_pair(pair)
    parent = ctx.registry.production_version(pair)
    if parent is None:
        raise BqxError(f"{pair} has no production version to update")
    art = ctx.registry.load(pair, version=parent)
    t0 = time.perf_counter()
    df = matured_rows(ctx, pair, as_of)
    t_read = time.perf_counter() - t0
    f, c, k = _segments(len(df), s)
    X = df.drop(columns=["target"])
    y = df["target"].to_numpy(np.float64)
    t1 = time.perf_counter()
    pipe, info = update_pipeline(art.model, art.pipeline, X.iloc[f], y[f], s)
    t_fit = time.perf_counter() - t1
    ts = s.train
    raw_c = np.asarray(pipe.predict(X.iloc[c]), dtype=np.float64)
    shrink = fit_shrinkage(y[c], raw_c, s.horizon)
    pc = shrink.apply(raw_c)

    def scale(sl: slice) -> np.ndarray | None:
        if ts.interval_method != "scaled":
            return None
        return np.asarray(X[SCALE_FEATURE].to_numpy(np.float64)[sl])

    conf = calibrate(y[c], pc, scale(c), level=ts.interval_level, method=ts.interval_method)
    pk = shrink.apply(np.asarray(pipe.predict(X.iloc[k]), dtype=np.float64))
    # an update that forecasts exactly what its parent does (typically both shrunk to "no
    # view", beta = 0, on a market without signal) is not worth a version or a rollout
    parent_k = art.predict_frame(X.iloc[k])
    unchanged = bool(np.allclose(pk, parent_k, rtol=0.0, atol=1e-15))
    lo, hi = conf.bounds(pk, scale(k))
    pf = shrink.apply(np.asarray(pipe.predict(X.iloc[f]), dtype=np.float64))
    idx = pd.DatetimeIndex(df.index)

    def span(sl: slice) -> list[str]:
        return [idx[sl.start].isoformat(), idx[sl.stop - 1].isoformat()]

    windows = {"train": span(f), "val": span(c), "calibration": span(c), "test": span(k)}
    metrics: dict[str, Any] = {
        "train": regression_metrics(y[f], pf),
        "val": regression_metrics(y[c], pc),
        "test": regression_metrics(y[k], pk),
        "baselines_val": baselines(y[c], lag=s.horizon),
        "baselines_test": baselines(y[k], lag=s.horizon),
        "test_coverage": coverage(y[k], lo, hi),
        "interval_level": ts.interval_level,
    }
    metrics.update(uncertainty(y[k], pk, lo, hi, s.horizon, ts.approval_level))
    new = dataclasses.replace(
        art,
        pipeline=pipe,
        conformal=conf,
        metrics=metrics,
        data_window=windows,
        shrink=shrink,
        created_at=pd.Timestamp.now(tz="UTC").isoformat(),
        version=None,
        _fast=None,
    )
    info = {**info, "parent_beta": art.shrinkage.beta, "beta": shrink.beta,
            "unchanged": unchanged}  # fmt: skip
    market = training_market(pair, s, X.index[f])  # the feature store's, where it has them
    total = time.perf_counter() - t0
    res = TrainResult(
        pair=pair,
        artifact=new,
        metrics=metrics,
        approved=False,  # decided by the stability check (submit_update)
        approval_reason="online update: pending the stability check",
        seconds={"selection": 0.0, "fit": t_fit, "total": total},
        rows={"train": f.stop - f.start, "val": c.stop - c.start, "test": k.stop - k.start,
              "gap": s.horizon + 1},
        extra={"baseline": training_baseline(X.iloc[f], list(new.features), pf, y[f],
                                             market=market_at(market, X.index[f]))},
    )  # fmt: skip
    return OnlineCandidate(pair, str(parent), res, info, windows,
                           {"read": t_read, "update": t_fit, "total": total})  # fmt: skip


def submit_update(ctx: Any, cand: OnlineCandidate, *, trigger: str = "online") -> dict[str, Any]:
    """Register ``cand``, run the stability check against its parent, approve or reject
    the version and record the outcome in the online state (pausing at the limit)."""
    from bqx.ops.gate import evaluate_gate
    from bqx.registry import APPROVED, model_name

    s, reg, st = ctx.settings, ctx.registry, ctx.state
    pair, parent = cand.pair, cand.parent
    if cand.info.get("unchanged"):
        why = (f"the update forecasts exactly what v{parent} does on the check window "
               f"(beta {cand.info.get('beta'):.3g}): not registered, nothing to roll out")  # fmt: skip
        st.record_online_update(pair, accepted=False, version=None, parent=parent,
                                result="unchanged", detail={"reason": why})  # fmt: skip
        return {"pair": pair, "version": None, "parent_version": parent, "accepted": False,
                "unchanged": True, "reason": why, "update": cand.info,
                "seconds": {k: round(x, 3) for k, x in cand.seconds.items()}}  # fmt: skip
    v = reg.log_and_register(cand.result, actor="online", run_name=f"{pair}-online")
    w = cand.windows
    for key, val in (
        ("trigger", trigger),
        ("parent_version", parent),
        ("data_start", w["train"][0]),
        ("data_end", w["test"][1]),
        ("online_method", str(cand.info.get("method"))),
    ):
        reg.client.set_model_version_tag(model_name(pair), v, key, val)
    rep = evaluate_gate(s, pair, v, registry=reg, store=ctx.store, production=parent)
    stab = rep.as_dict()
    out: dict[str, Any] = {"pair": pair, "version": v, "parent_version": parent,
                           "stability": stab, "update": cand.info,
                           "seconds": {k: round(x, 3) for k, x in cand.seconds.items()}}  # fmt: skip
    if rep.passed:
        pinfo = reg.get(pair, parent)
        why = f"online update of v{parent}, stability check passed: {rep.reason}"
        if pinfo.approval_status == APPROVED:
            reg.approve(pair, v, actor="online", reason=why[:480])
        out["accepted"] = True
    else:
        reg.reject(pair, v, actor="online", reason=f"stability check: {rep.reason}"[:480])
        out["accepted"] = False
    state = st.record_online_update(
        pair, accepted=bool(rep.passed), version=v, parent=parent,
        result="accepted" if rep.passed else "rejected",
        detail={"reason": rep.reason, "p": rep.p_candidate_worse, "n": rep.n},
        max_rejections=s.online.max_rejections,
    )  # fmt: skip
    if not rep.passed and state["paused"] and state["rejection_streak"] == s.online.max_rejections:
        st.raise_alert(
            PAUSED_RULE,
            f"{pair}: online learning paused after {state['rejection_streak']} rejected "
            f"updates in a row (last: v{v}, {rep.reason}); `bqx online enable --pairs {pair}` "
            "resumes",
            severity="warning",
            pair=pair,
            fingerprint=f"{PAUSED_RULE}:{pair}",
        )
        out["paused"] = True
    out["state"] = {k: state[k] for k in ("enabled", "paused", "rejection_streak")}
    return out


def run_online_trigger(ctx: Any, trigger_id: int, holder: str) -> dict[str, Any]:
    """Run one claimed ``online`` trigger (the operator's ``run_triggers``). An accepted
    update's trigger ends ``done`` without a rollout note, so the operator's follow-up
    gates it and starts its rollout; a rejected one ends ``done`` with the note, so the
    follow-up leaves it alone."""
    from bqx.online.update import OnlineUnsupported

    st = ctx.state
    tr = st.get_trigger(trigger_id)
    assert tr is not None
    pair = tr["pair"]
    parent = ctx.registry.production_version(pair)
    ost = st.online_state(pair)
    if not ost["enabled"] or ost["paused"]:
        why = "paused" if ost["paused"] else "disabled"
        st.finish_trigger(trigger_id, "done", parent_version=parent,
                          detail={"skipped": why, "rollout": f"not started: online {why}"})  # fmt: skip
        return {"trigger_id": trigger_id, "pair": pair, "status": "skipped", "reason": why}
    try:
        cand = build_update(ctx, pair)
        res = submit_update(ctx, cand)
    except OnlineUnsupported as e:
        st.record_online_update(pair, accepted=True, version=None, parent=parent,
                                result="unsupported", detail={"reason": e.message})  # fmt: skip
        st.finish_trigger(trigger_id, "done", parent_version=parent,
                          detail={"skipped": e.message, "rollout": "not started: unsupported"})  # fmt: skip
        return {"trigger_id": trigger_id, "pair": pair, "status": "skipped", "reason": e.message}
    except Exception as e:
        log.exception("online update of %s failed", pair)
        st.finish_trigger(trigger_id, "failed", parent_version=parent, detail={"error": str(e)})
        st.raise_alert(
            FAILED_RULE, f"{pair}: online update failed: {e}; production untouched",
            severity="warning", pair=pair, fingerprint=f"{FAILED_RULE}:{pair}",
        )  # fmt: skip
        return {"trigger_id": trigger_id, "pair": pair, "status": "failed", "error": str(e)}
    if res.get("unchanged"):
        st.finish_trigger(trigger_id, "done", parent_version=cand.parent,
                          detail={"skipped": res["reason"], "update": res["update"],
                                  "rollout": "not started: unchanged"})  # fmt: skip
        return {"trigger_id": trigger_id, "status": "unchanged", **res}
    detail: dict[str, Any] = {"stability": res["stability"], "update": res["update"],
                              "data_window": cand.windows}  # fmt: skip
    if not res["accepted"]:
        detail["rollout"] = REJECTED_ROLLOUT
    st.finish_trigger(
        trigger_id, "done", version=res["version"], parent_version=cand.parent,
        data_start=cand.windows["train"][0], data_end=cand.windows["test"][1], detail=detail,
    )  # fmt: skip
    return {"trigger_id": trigger_id, "status": "done", **res}


def due_pairs(ctx: Any, pairs: list[str], now: pd.Timestamp | None = None) -> list[str]:
    """Enabled, unpaused pairs whose last online update is ``online.every_h`` old or more
    and with no rollout running."""
    o = ctx.settings.online
    if o.every_h <= 0:
        return []
    now = now or pd.Timestamp.now(tz="UTC")
    busy = {r["pair"] for r in ctx.state.active_rollouts()}
    out = []
    for p in pairs:
        stt = ctx.state.online_state(p)
        if not stt["enabled"] or stt["paused"] or p in busy:
            continue
        last = stt["last_update_at"]
        if last is None or (now - pd.Timestamp(last)).total_seconds() >= o.every_h * 3600:
            out.append(p)
    return out


def schedule(ctx: Any, pairs: list[str]) -> list[dict[str, Any]]:
    """Record an ``online`` trigger for each due pair (key per pair and period, so a
    restarted operator records it once)."""
    o = ctx.settings.online
    new = []
    now = pd.Timestamp.now(tz="UTC")
    period = max(1, int(o.every_h * 3600))
    slot = int(now.timestamp()) // period
    for p in due_pairs(ctx, pairs, now):
        tid, created = ctx.state.add_trigger(
            f"online:{p}:{slot}", p, "online", reason="online update",
            parent_version=ctx.registry.production_version(p),
        )  # fmt: skip
        if created:
            new.append({"id": tid, "pair": p, "kind": "online"})
    return new
