"""The operator: one long-running process that closes the loop.

Every ``ops.tick_s`` the leader (the holder of the ``operator`` lease in the state DB):

1. runs the maturing + monitoring pass when due (``ops.monitor_every_s``; monitoring's
   code when installed) and the production quality check (:func:`check_quality`);
2. records triggers: open critical drift/quality alerts, the retraining schedule;
3. runs pending triggers (retrain; or an online update, :mod:`bqx.online`, for the
   ``online`` job's triggers every ``online.every_h`` hours, off by default), then their
   follow-ups (gate, rollout start);
4. evaluates every active rollout (advance / hold / rollback / promote).

Exactly one operator acts: the lease (:mod:`bqx.state.leases`) is renewed by a separate
thread every ``lease_ttl_s / 3`` (so a long retrain does not lose it) and a standby polls
it every tick, taking over within ``lease_ttl_s`` (+ one tick) after the leader dies, even
by ``kill -9``. Everything the operator changes is keyed (triggers) or compare-and-set
(rollout steps), so a restart or a takeover mid-tick neither retrains twice for one trigger
nor repeats a rollout step; a trigger another holder left ``running`` is marked
``interrupted`` (an alert says so) instead of being rerun.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pandas as pd

from bqx.deps import LazyDeps
from bqx.universe import PAIRS

log = logging.getLogger(__name__)

LEASE = "operator"


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Operator(LazyDeps):
    def __init__(
        self,
        settings: Any,
        *,
        holder: str | None = None,
        state: Any = None,
        registry: Any = None,
        store: Any = None,
        monitor: Any = None,
    ) -> None:
        from bqx.rollout.machine import RolloutManager

        self.settings = settings
        self.holder = holder or default_holder()
        self._state = state
        self._registry = registry
        self._store = store
        self.monitor = monitor if monitor is not None else _monitoring_hook()
        self.rollouts = RolloutManager(
            settings, state=self.state, registry=self.registry, store=store
        )
        self.token: int | None = None
        self._leader = threading.Event()
        self.last_tick: dict[str, Any] = {}

    # -- dependencies ---------------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The bar store (opened on first use), shared with the rollout manager."""
        store = LazyDeps.store.fget(self)  # type: ignore[attr-defined]
        self.rollouts._store = store
        return store

    @property
    def leader(self) -> bool:
        return self._leader.is_set()

    # -- lease ----------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take or renew the lease; True while this process leads."""
        try:
            tok = self.state.try_acquire_lease(LEASE, self.holder, self.settings.ops.lease_ttl_s)
        except Exception as e:  # state DB down: we cannot prove we lead, so we do not
            log.warning("lease: %s", e)
            tok = None
        was = self.leader
        if tok is None:
            if was:
                log.warning("operator %s lost the lease", self.holder)
            self._leader.clear()
            return False
        if not was:
            log.info("operator %s leads (token %d)", self.holder, tok)
            self.token = tok
            self._leader.set()
            for tid in self.state.interrupt_stale_triggers(self.holder):
                self.state.raise_alert(
                    "trigger_interrupted",
                    f"retrain trigger {tid} was interrupted by an operator failure; not rerun "
                    "(retrain on demand if still needed)",
                    severity="warning",
                    fingerprint=f"trigger_interrupted:{tid}",
                )
        return True

    def run(self, stop: threading.Event | None = None, max_ticks: int | None = None) -> None:
        """Loop until ``stop`` is set (or ``max_ticks`` leader ticks ran)."""
        stop = stop or threading.Event()
        o = self.settings.ops
        renewer = threading.Thread(target=self._renew_loop, args=(stop,), daemon=True)
        renewer.start()
        ticks = 0
        try:
            while not stop.is_set():
                if self.acquire():
                    try:
                        self.last_tick = self.tick()
                    except Exception:
                        log.exception("operator tick failed")
                    ticks += 1
                    if max_ticks is not None and ticks >= max_ticks:
                        break
                stop.wait(o.tick_s)
        finally:
            stop.set()
            if self.leader:
                self.state.release_lease(LEASE, self.holder)
                self._leader.clear()

    def _renew_loop(self, stop: threading.Event) -> None:
        period = max(0.2, self.settings.ops.lease_ttl_s / 3)
        while not stop.wait(period):
            if self.leader:
                self.acquire()

    # -- one tick -------------------------------------------------------------------------
    def pairs(self) -> list[str]:
        want = self.settings.ops.pairs
        if [p.lower() for p in want] == ["all"]:
            return [p for p in PAIRS if self.registry.production_version(p) is not None]
        return [p.upper() for p in want]

    def _due(self, task: str, every_s: float) -> bool:
        last = self.state.task_last_run(task)
        return last is None or (pd.Timestamp.now(tz="UTC") - last).total_seconds() >= every_s

    def tick(self) -> dict[str, Any]:
        """One pass of the schedule (leader only)."""
        from bqx.ops.triggers import check_quality

        out: dict[str, Any] = {"holder": self.holder, "at": pd.Timestamp.now(tz="UTC")}
        o = self.settings.ops
        if self._due("monitor", o.monitor_every_s):
            mon: dict[str, Any] = {}
            if self.monitor is not None:
                try:
                    mon["monitoring"] = self.monitor(self.settings)
                except Exception as e:
                    log.exception("monitoring pass failed")
                    mon["monitoring_error"] = str(e)
            mon["quality"] = []
            for p in self.pairs():
                try:
                    mon["quality"].append(check_quality(self, p))
                except Exception as e:
                    log.warning("quality check of %s failed: %s", p, e)
            self.state.mark_task_run("monitor")
            out["monitor"] = mon
        out["new_triggers"] = self.collect_triggers()
        if self.settings.online.every_h > 0:  # the online job (bqx.online): records triggers
            from bqx.online.job import schedule

            try:
                out["new_triggers"] += schedule(self, self.pairs())
            except Exception as e:
                log.exception("online schedule failed")
                out["online_error"] = str(e)
        out["retrains"] = self.run_triggers()
        out["rollouts"] = self.step_rollouts()
        return out

    def collect_triggers(self) -> list[dict[str, Any]]:
        o = self.settings.ops
        st = self.state
        new = []
        alerts = st.read_alerts(open_only=True)
        rules = {r: "drift" for r in o.drift_rules} | {r: "quality" for r in o.quality_rules}
        managed = set(self.pairs())
        busy = {r["pair"] for r in st.active_rollouts()}
        cool = timedelta(hours=o.retrain_cooldown_h)
        now = pd.Timestamp.now(tz="UTC")
        for a in alerts.itertuples():
            if a.severity != "critical" or a.rule not in rules or a.pair not in managed:
                continue
            if a.pair in busy:  # a candidate is already being rolled out for this pair
                continue
            last = self._last_trigger(a.pair)
            if last is not None and now - last < cool:
                continue
            tid, created = st.add_trigger(
                f"alert:{a.id}", a.pair, rules[a.rule], reason=f"{a.rule}: {a.message}",
                detail={"alert_id": int(a.id)},
            )  # fmt: skip
            if created:
                new.append({"id": tid, "pair": a.pair, "kind": rules[a.rule]})
        if o.retrain_every_days > 0:
            every = timedelta(days=o.retrain_every_days)
            now = pd.Timestamp.now(tz="UTC")
            for p in managed:
                last = self._last_trained(p)
                if last is None or now - last < every:
                    continue
                key = f"schedule:{p}:{(last + every).strftime('%Y-%m-%dT%H:%M')}"
                tid, created = st.add_trigger(key, p, "schedule", reason="scheduled retrain")
                if created:
                    new.append({"id": tid, "pair": p, "kind": "schedule"})
        return new

    def _retrain_triggers(self, pair: str) -> pd.DataFrame:
        """The pair's retrain triggers (online updates do not count as retrains)."""
        tr = self.state.triggers(pair=pair)
        return tr[tr["kind"] != "online"] if len(tr) else tr

    def _last_trigger(self, pair: str) -> pd.Timestamp | None:
        tr = self._retrain_triggers(pair)
        return pd.Timestamp(tr["created_at"].max()) if len(tr) else None

    def _last_trained(self, pair: str) -> pd.Timestamp | None:
        tr = self._retrain_triggers(pair)
        if len(tr):
            return pd.Timestamp(tr["created_at"].max())
        prod = self.registry.production_version(pair)
        return pd.Timestamp(self.registry.get(pair, prod).created) if prod is not None else None

    def run_triggers(self) -> list[dict[str, Any]]:
        from bqx.ops.triggers import follow_up, retrain

        out = []
        st = self.state
        for tr in st.triggers(status="pending").itertuples():
            if not self.leader:
                break
            if st.claim_trigger(int(tr.id), self.holder):
                if tr.kind == "online":  # an online update, not a retrain (bqx.online)
                    from bqx.online.job import run_online_trigger

                    out.append(run_online_trigger(self, int(tr.id), self.holder))
                    continue
                out.append(retrain(self, int(tr.id), self.holder))
                self._resolve_cause(int(tr.id))
        done = st.triggers(status="done")
        for tr in done.itertuples():
            if not self.leader:
                break
            d = st.get_trigger(int(tr.id))
            assert d is not None
            if "rollout" in (d.get("detail") or {}):
                continue
            try:
                out.append(follow_up(self, d))
            except Exception as e:
                log.exception("follow-up of trigger %s failed", tr.id)
                out.append({"trigger_id": int(tr.id), "error": str(e)})
        return out

    def _resolve_cause(self, trigger_id: int) -> None:
        """The alert that caused a retrain is resolved once the retrain ran (done or
        failed): if the problem persists, monitoring raises a new one, which may trigger
        again after ``ops.retrain_cooldown_h``."""
        tr = self.state.get_trigger(trigger_id)
        aid = (tr or {}).get("detail", {}) or {}
        aid = aid.get("alert_id") if isinstance(aid, dict) else None
        if aid is None:
            return
        al = self.state.read_alerts(open_only=True)
        for fp in al.loc[al["id"] == aid, "fingerprint"]:
            self.state.resolve_alert(str(fp))

    def step_rollouts(self) -> list[dict[str, Any]]:
        out = []
        for ro in self.state.active_rollouts():
            if not self.leader:
                break
            try:
                out.append(self.rollouts.evaluate(ro, actor=f"operator:{self.holder}").as_dict())
            except Exception as e:
                log.exception("rollout %s evaluation failed", ro["id"])
                out.append({"rollout_id": ro["id"], "error": str(e)})
        return out

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        st = self.state
        tr = st.triggers()
        return {
            "lease": st.lease_info(LEASE),
            "tasks": st.task_clocks(),
            "triggers": (
                json.loads(tr.tail(20).to_json(orient="records", date_format="iso"))
                if len(tr)
                else []
            ),
            "rollouts": [
                {
                    k: r[k]
                    for k in (
                        "id",
                        "pair",
                        "kind",
                        "state",
                        "weight",
                        "candidate_version",
                        "baseline_version",
                        "paused",
                        "entered_at",
                    )
                }
                for r in st.active_rollouts()
            ],
        }


def request_retrain(
    state: Any, pairs: list[str], *, reason: str | None = None, registry: Any = None
) -> list[dict[str, Any]]:
    """Record on-demand retrain triggers; the leading operator runs them on its next tick."""
    from bqx.ops.triggers import manual_key
    from bqx.universe import normalize_pair

    out = []
    for p in pairs:
        pair = normalize_pair(p)
        parent = registry.production_version(pair) if registry is not None else None
        tid, _ = state.add_trigger(
            manual_key(), pair, "manual", reason=reason or "on demand", parent_version=parent
        )
        out.append({"trigger_id": tid, "pair": pair, "status": "pending"})
    return out


def _monitoring_hook() -> Any:
    """Monitoring's pass when :mod:`bqx.monitoring` provides one (``run_pass(settings)``)."""
    try:
        import bqx.monitoring as m  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    for name in ("run_pass", "monitor_pass", "run_once"):
        fn = getattr(m, name, None)
        if callable(fn):
            return fn
    return None


def wait_for(cond: Any, timeout: float, poll: float = 0.1) -> bool:
    """Poll ``cond()`` until true or ``timeout`` seconds pass (tests, benchmarks)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(poll)
    return bool(cond())
