"""The per-pair rollout state machine.

::

    start --> shadow --(dwell, enough matured samples)--> canary[0] --> canary[1] ... --> production
                 \\                                          |              |
                  +--------- abort / automatic rollback ----+--------------+--> aborted / rolled_back

* **shadow**: production answers every request; the candidate predicts the same requests
  off the response path (arm ``shadow``), so quality is compared on the same bars.
* **canary[i]**: ``steps[i]`` of clients (hash-sticky, :mod:`bqx.rollout.routing`) are
  answered by the candidate; paired bars are those both arms answered (and, with
  ``rollout.shadow_during_canary``, shadow calls continue for the others).
* **production**: the registry's ``production`` alias moved to the candidate (recorded in
  the promotion history with the reason); workers reload within ``serve.rollout_refresh_s``.
* Blue/green is ``steps = [1.0]``: one jump to 100 %, and rollback is instant (weight 0).

Every change is one state-DB transaction guarded by the row's change counter (``gen``),
recorded with its reason and actor: an operator that crashes or loses its lease mid-step,
or two operators racing, can never apply a step twice.

The guard (:meth:`RolloutManager.evaluate`, run by the operator every tick):

1. candidate error rate (exceptions, non-finite or absurd forecasts, unloadable artifact;
   all workers summed) above ``rollout.max_error_rate`` after ``min_requests`` -> rollback;
2. candidate p99 latency (worst worker) above ``rollout.max_p99_ms`` *and*
   ``p99_factor`` x the baseline's -> rollback;
3. paired matured quality significantly worse (Diebold-Mariano, HAC, one-sided p below
   ``rollout.quality_alpha``) -> rollback;
4. otherwise, after the dwell time with at least ``min_requests`` candidate calls (served
   or shadow) and ``min_samples`` matured paired bars -> advance; with fewer -> hold
   ("too few" is never a pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bqx.deps import LazyDeps
from bqx.rollout import (
    RolloutConflictError,
    RolloutInputError,
    RolloutNotFoundError,
)
from bqx.rollout.routing import arm_names
from bqx.state import RolloutExistsError, current_actor, utcnow
from bqx.universe import normalize_pair

log = logging.getLogger(__name__)

ROLLBACK_RULE = "rollout_rollback"


@dataclass
class Verdict:
    """What :meth:`RolloutManager.evaluate` decided for one rollout."""

    pair: str
    rollout_id: int
    action: str  # hold / advance / promote / rollback / finalize / none
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "rollout_id": self.rollout_id,
            "action": self.action,
            "reason": self.reason,
            "checks": self.checks,
        }


class RolloutManager(LazyDeps):
    """Start, steer and evaluate rollouts (library API under the CLI, the API and the
    operator). ``store`` is needed only for quality checks (realised targets)."""

    def __init__(
        self,
        settings: Any,
        *,
        state: Any = None,
        registry: Any = None,
        store: Any = None,
        clock: Any = None,
    ) -> None:
        self.settings = settings
        self._state = state
        self._registry = registry
        self._store = store
        self.clock = clock or utcnow

    # -- queries --------------------------------------------------------------------------
    def active(self, pair: str) -> dict[str, Any] | None:
        pair = normalize_pair(pair)
        for r in self.state.active_rollouts():
            if r["pair"] == pair:
                return r
        return None

    def status(self, pair: str | None = None, *, quality: bool = True) -> list[dict[str, Any]]:
        """Active rollouts (or the latest of ``pair``) with health, quality and history."""
        if pair is not None:
            p = normalize_pair(pair)
            rows = self.state.rollouts(p, limit=1)
        else:
            rows = self.state.active_rollouts()
        out = []
        for r in rows:
            d = dict(r)
            d["health"] = self.state.rollout_health(r["id"])
            if quality and r["state"] in ("shadow", "canary"):
                try:
                    d["quality"] = self._quality(r)
                except Exception as e:  # the store may be busy; status must still answer
                    d["quality"] = {"error": str(e)}
            ev = self.state.rollout_events(r["id"])
            d["events"] = [
                {
                    "at": e.at.isoformat(),
                    "action": e.action,
                    "from": e.from_state,
                    "to": e.to_state,
                    "weight": None if e.to_weight != e.to_weight else e.to_weight,
                    "reason": e.reason,
                    "actor": e.actor,
                }
                for e in ev.itertuples()
            ]
            out.append(d)
        return out

    # -- validation -----------------------------------------------------------------------
    def check_version(self, pair: str, version: str) -> Any:
        """The registry info of a servable candidate, or a 409 naming what is wrong."""
        from bqx.features import feature_set_version
        from bqx.registry import APPROVED, model_name

        info = self.registry.get(pair, version)  # ModelNotFoundError -> 404
        if info.registration != "complete":
            raise RolloutConflictError(
                f"{model_name(pair)} version {version} was not completely registered",
                hint="retrain it",
            )
        if info.approval_status != APPROVED:
            raise RolloutConflictError(
                f"{model_name(pair)} version {version} is {info.approval_status}, not Approved",
                hint=f"`bqx models approve {pair} {version}` after reviewing it",
            )
        if info.feature_set_version != feature_set_version():
            raise RolloutConflictError(
                f"{model_name(pair)} version {version} uses feature set "
                f"{info.feature_set_version}; the pipeline serves {feature_set_version()}",
                hint=f"retrain: `bqx retrain --pairs {pair}`",
            )
        return info

    # -- commands -------------------------------------------------------------------------
    def start(
        self,
        pair: str,
        version: str | int,
        *,
        kind: str = "canary",
        steps: list[float] | None = None,
        actor: str | None = None,
        reason: str | None = None,
        trigger_id: int | None = None,
        gate: dict[str, Any] | None = None,
        shadow_s: float | None = None,
        dwell_s: float | None = None,
        skip_shadow: bool = False,
    ) -> dict[str, Any]:
        """Start a rollout of ``version`` (shadow first; ``skip_shadow`` starts at the first
        canary step). 409 for an unapproved version, a version of another feature set, the
        production version itself, or a pair with a rollout already running."""
        pair = normalize_pair(pair)
        v = str(version)
        rs = self.settings.rollout
        if kind not in ("canary", "bluegreen"):
            raise RolloutInputError(f"kind must be canary or bluegreen, not {kind!r}")
        steps = [1.0] if kind == "bluegreen" else list(steps or rs.steps)
        if not steps or any(not 0 < s <= 1 for s in steps) or steps != sorted(set(steps)):
            raise RolloutInputError(
                f"steps {steps} must be increasing candidate shares in (0, 1]",
                hint="e.g. --steps 0.1,0.5",
            )
        self.check_version(pair, v)
        prod = self.registry.production_version(pair)
        if prod is None:
            raise RolloutConflictError(
                f"{pair} has no production version to compare against",
                hint=f"promote directly: `bqx models promote {pair} {v}`",
            )
        if prod == v:
            raise RolloutConflictError(f"{pair} version {v} is already in production")
        cur = self.active(pair)
        if cur is not None:
            raise self._running(cur)
        try:
            return self.state.create_rollout(
                pair=pair,
                kind=kind,
                baseline_version=prod,
                candidate_version=v,
                state="canary" if skip_shadow else "shadow",
                steps=steps,
                step=0 if skip_shadow else -1,
                weight=steps[0] if skip_shadow else 0.0,
                shadow=rs.shadow_during_canary if skip_shadow else True,
                dwell_s=rs.dwell_s if dwell_s is None else dwell_s,
                shadow_s=rs.shadow_s if shadow_s is None else shadow_s,
                actor=actor or current_actor(),
                reason=reason or "manual start",
                trigger_id=trigger_id,
                gate=gate,
            )
        except RolloutExistsError:
            cur = self.active(pair)
            raise self._running(cur) from None

    @staticmethod
    def _running(cur: dict[str, Any] | None) -> RolloutConflictError:
        if cur is None:
            return RolloutConflictError("a rollout is already running for this pair")
        what = "an experiment" if cur["kind"] == "experiment" else "a rollout"
        return RolloutConflictError(
            f"{what} (id {cur['id']}, {cur['state']}, candidate v{cur['candidate_version']}) "
            f"is already running for {cur['pair']}",
            hint=f"abort it first: `bqx rollout abort {cur['pair']}`",
        )

    def _require_active(self, pair: str) -> dict[str, Any]:
        cur = self.active(pair)
        if cur is None:
            raise RolloutNotFoundError(f"no active rollout for {normalize_pair(pair)}")
        return cur

    def _apply(self, cur: dict[str, Any], **kw: Any) -> dict[str, Any]:
        new = self.state.transition_rollout(cur["id"], cur["gen"], **kw)
        if new is None:
            raise RolloutConflictError(
                f"rollout {cur['id']} of {cur['pair']} changed concurrently; nothing was applied",
                hint="check `bqx rollout status` and retry",
            )
        return new

    def pause(self, pair: str, *, actor: str | None = None, reason: str | None = None) -> dict:
        cur = self._require_active(pair)
        if cur["paused"]:
            raise RolloutConflictError(f"the rollout of {cur['pair']} is already paused")
        return self._apply(
            cur, action="pause", paused=True, reset_clock=False,
            reason=reason or "manual pause", actor=actor or current_actor(),
        )  # fmt: skip

    def resume(self, pair: str, *, actor: str | None = None, reason: str | None = None) -> dict:
        cur = self._require_active(pair)
        if not cur["paused"]:
            raise RolloutConflictError(f"the rollout of {cur['pair']} is not paused")
        return self._apply(
            cur, action="resume", paused=False, reset_clock=True,
            reason=reason or "manual resume", actor=actor or current_actor(),
        )  # fmt: skip

    def abort(self, pair: str, *, actor: str | None = None, reason: str | None = None) -> dict:
        cur = self._require_active(pair)
        return self._apply(
            cur, action="abort", state="aborted", weight=0.0, shadow=False,
            reason=reason or "manual abort", actor=actor or current_actor(),
        )  # fmt: skip

    def promote(self, pair: str, *, actor: str | None = None, reason: str | None = None) -> dict:
        """Finish at once: move production to the candidate (manual override)."""
        cur = self._require_active(pair)
        return self._finish(cur, actor or current_actor(), reason or "manual promote")

    def _finish(self, cur: dict[str, Any], actor: str, reason: str) -> dict[str, Any]:
        # the alias moves first; if we crash before the row changes, evaluate() sees
        # production == candidate and only records the end (no second promotion)
        pair, v = cur["pair"], str(cur["candidate_version"])
        if self.registry.production_version(pair) != v:
            self.registry.promote(pair, v, actor=actor, reason=f"rollout {cur['id']}: {reason}")
        return self._apply(
            cur, action="promote", state="production", weight=1.0, shadow=False,
            reason=reason, actor=actor,
        )  # fmt: skip

    def rollback(self, cur: dict[str, Any], reason: str, actor: str = "operator") -> dict:
        """Automatic rollback: the candidate gets no traffic at once; production was never
        moved. Raises a critical alert."""
        new = self._apply(
            cur, action="rollback", state="rolled_back", weight=0.0, shadow=False,
            reason=reason, actor=actor,
        )  # fmt: skip
        self.state.raise_alert(
            ROLLBACK_RULE,
            f"{cur['pair']}: candidate v{cur['candidate_version']} rolled back "
            f"(rollout {cur['id']}, {cur['state']} at {cur['weight']:.0%}): {reason}",
            severity="critical",
            pair=cur["pair"],
            fingerprint=f"{ROLLBACK_RULE}:{cur['id']}",
        )
        return new

    # -- the guard ------------------------------------------------------------------------
    def _quality(self, cur: dict[str, Any]) -> dict[str, Any]:
        from bqx.rollout.quality import arm_outcomes, paired_quality

        outs = arm_outcomes(self.state, self.store, self.settings, cur)
        return paired_quality(outs, self.settings.horizon)

    def health_checks(self, cur: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(rollback reason or None, the numbers) from the workers' health counters."""
        rs = self.settings.rollout
        base_arm, cand_arm = arm_names(cur["kind"])
        h = self.state.rollout_health(cur["id"])
        c_req = sum(h.get(a, {}).get("requests", 0) for a in (cand_arm, "shadow"))
        c_err = sum(h.get(a, {}).get("errors", 0) for a in (cand_arm, "shadow"))
        p99s = [h[a]["p99_ms"] for a in (cand_arm, "shadow") if h.get(a, {}).get("p99_ms")]
        c_p99 = max(p99s) if p99s else None
        b_p99 = h.get(base_arm, {}).get("p99_ms")
        checks = {
            "candidate_requests": c_req,
            "candidate_errors": c_err,
            "candidate_p99_ms": c_p99,
            "baseline_p99_ms": b_p99,
        }
        if c_req >= rs.min_requests and c_err / c_req > rs.max_error_rate:
            return (
                f"candidate error rate {c_err}/{c_req} = {c_err / c_req:.1%} exceeds "
                f"{rs.max_error_rate:.1%}",
                checks,
            )
        slow = c_req >= rs.min_requests and c_p99 is not None and c_p99 > rs.max_p99_ms
        if slow and (b_p99 is None or c_p99 > rs.p99_factor * b_p99):
            return (
                f"candidate p99 latency {c_p99:.1f} ms exceeds {rs.max_p99_ms:g} ms "
                f"(baseline {b_p99 if b_p99 is None else round(b_p99, 1)} ms)",
                checks,
            )
        return None, checks

    def evaluate(self, cur: dict[str, Any], actor: str = "operator") -> Verdict:
        """One automatic decision for an active rollout (the operator calls this)."""
        rs = self.settings.rollout
        pair = cur["pair"]
        v = Verdict(pair, cur["id"], "hold", "")
        # a promotion interrupted between moving the alias and recording it: finish it
        if self.registry.production_version(pair) == str(cur["candidate_version"]):
            v.rollout = self._apply(
                cur, action="promote", state="production", weight=1.0, shadow=False,
                reason="production alias already at the candidate (resumed)", actor=actor,
            )  # fmt: skip
            v.action, v.reason = "finalize", "production alias already at the candidate"
            return v
        why, checks = self.health_checks(cur)
        v.checks.update(checks)
        if why is not None:
            v.rollout = self.rollback(cur, why, actor)
            v.action, v.reason = "rollback", why
            return v
        q = self._quality(cur)
        v.checks["quality"] = q
        p = q.get("p_candidate_worse")
        if p is not None and q["n_paired"] >= max(rs.min_samples, 3) and p < rs.quality_alpha:
            why = (
                f"paired matured quality: candidate MSE {q['mse_candidate']:.3g} vs "
                f"{q['mse_baseline']:.3g} on {q['n_paired']} bars, one-sided DM p = {p:.2g} "
                f"< {rs.quality_alpha:g}"
            )
            v.rollout = self.rollback(cur, why, actor)
            v.action, v.reason = "rollback", why
            return v
        if cur["kind"] == "experiment":
            from bqx.rollout.experiments import ExperimentManager

            return ExperimentManager(self).evaluate(cur, v, actor)
        return self._advance(cur, v, q, actor)

    def _advance(self, cur: dict[str, Any], v: Verdict, q: dict[str, Any], actor: str) -> Verdict:
        rs = self.settings.rollout
        if cur["paused"]:
            v.reason = "paused"
            return v
        dwell = cur["shadow_s"] if cur["state"] == "shadow" else cur["dwell_s"]
        waited = (self.clock() - cur["entered_at"]).total_seconds()
        if waited < dwell:
            v.reason = f"dwelling: {waited:.0f} of {dwell:.0f} s"
            return v
        c_req = int(v.checks.get("candidate_requests") or 0)
        if c_req < rs.min_requests:
            v.reason = (
                f"too few candidate calls to judge its health: {c_req} < {rs.min_requests} "
                "(holding)"
            )
            return v
        n = int(q.get("n_paired") or 0)
        if n < rs.min_samples:
            v.reason = f"too few matured paired samples: {n} < {rs.min_samples} (holding)"
            return v
        steps = list(cur["steps"])
        nxt = int(cur["step"]) + 1
        if nxt >= len(steps):
            v.rollout = self._finish(
                cur, actor, f"all steps passed ({n} matured paired bars, p = "
                f"{q.get('p_candidate_worse')})",
            )  # fmt: skip
            v.action, v.reason = "promote", "all steps passed"
            return v
        w = float(steps[nxt])
        reason = (
            f"dwell {dwell:.0f} s passed with {n} matured paired bars; "
            f"{cur['state']} {cur['weight']:.0%} -> canary {w:.0%}"
        )
        v.rollout = self._apply(
            cur, action="advance", state="canary", step=nxt, weight=w,
            shadow=rs.shadow_during_canary if cur["kind"] != "experiment" else False,
            reason=reason, actor=actor,
        )  # fmt: skip
        v.action, v.reason = "advance", reason
        return v


def dwell_left(cur: dict[str, Any], now: Any) -> float:
    """Seconds left in the current step (0 when due)."""
    dwell = cur["shadow_s"] if cur["state"] == "shadow" else cur["dwell_s"]
    return max(0.0, dwell - (now - cur["entered_at"]) / timedelta(seconds=1))
