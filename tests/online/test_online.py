"""Online learning: an update is a new version with its parent and data window, checked
against its parent (paired, overlap-aware) and then gated and rolled out shadow first by
the operator; a damaged update is rejected; three rejections in a row pause the pair."""

from __future__ import annotations

import numpy as np

from tests.online.conftest import PAIR


def _damage(cand) -> None:  # type: ignore[no-untyped-def]
    """Negate the updated ridge coefficients: forecasts point the wrong way."""
    ridge = cand.result.artifact.pipeline.named_steps["model"].named_steps["ridge"]
    ridge.coef_ = -np.asarray(ridge.coef_)
    cand.result.artifact._fast = None


def test_update_is_gated_and_rolled_out_shadow_first(op) -> None:  # type: ignore[no-untyped-def]
    from bqx.registry import model_name

    op.settings.online.every_h = 24
    assert op.state.set_online_enabled(PAIR, True)["enabled"]
    new = [t for t in op.tick()["new_triggers"] if t["kind"] == "online"]
    assert len(new) == 1
    tr = op.state.get_trigger(new[0]["id"])
    assert tr["status"] == "done" and tr["parent_version"] == "1"
    v = tr["version"]
    d = tr["detail"]
    assert d["stability"]["passed"], d["stability"]["reason"]
    assert d["gate"]["passed"] and d["rollout"] == "started"
    # the stability check scored bars after the update's fit + calibration windows
    assert d["stability"]["window"]["after"] == d["data_window"]["val"][1]
    assert d["stability"]["n"] >= op.settings.ops.gate_min_rows
    tags = op.registry.client.get_model_version(model_name(PAIR), v).tags
    assert tags["trigger"] == "online" and tags["parent_version"] == "1"
    assert tags["data_start"] == d["data_window"]["train"][0]
    [ro] = op.state.active_rollouts()
    assert ro["candidate_version"] == v and ro["state"] == "shadow"
    assert op.registry.production_version(PAIR) == "1"  # nothing promoted by the update
    assert op.state.online_state(PAIR)["rejection_streak"] == 0
    # due again only after every_h, and not while its rollout runs
    assert [t for t in op.tick()["new_triggers"] if t["kind"] == "online"] == []


def test_damaged_updates_are_rejected_and_three_pause(op) -> None:  # type: ignore[no-untyped-def]
    from bqx.online.job import PAUSED_RULE, build_update, submit_update
    from bqx.registry import REJECTED

    op.state.set_online_enabled(PAIR, True)
    cand = build_update(op, PAIR)
    _damage(cand)
    for i in range(3):  # each submission registers a new version
        out = submit_update(op, cand)
        stab = out["stability"]
        assert not out["accepted"], (stab, out["update"])
        assert stab["p_candidate_worse"] < op.settings.ops.gate_alpha
        assert stab["mse_candidate"] > stab["mse_production"]
        assert op.registry.get(PAIR, out["version"]).approval_status == REJECTED
        st = op.state.online_state(PAIR)
        assert st["rejection_streak"] == i + 1 and st["paused"] == (i == 2)
        al = op.state.read_alerts(open_only=True)
        assert (PAUSED_RULE in set(al["rule"])) == (i == 2)
    assert op.state.read_alerts(open_only=True).iloc[-1]["severity"] == "warning"
    assert op.state.active_rollouts() == [] and op.registry.production_version(PAIR) == "1"
    op.settings.online.every_h = 1e-6
    assert [t for t in op.tick()["new_triggers"] if t["kind"] == "online"] == []  # paused
    assert not op.state.set_online_enabled(PAIR, True)["paused"]  # enable resumes


def test_rejected_update_never_reaches_the_gate_or_a_rollout(op) -> None:  # type: ignore[no-untyped-def]
    """A trigger whose update failed the stability check is left alone by the follow-up
    (no gate, no rollout), even across operator ticks."""
    from bqx.online.job import REJECTED_ROLLOUT

    op.state.set_online_enabled(PAIR, True)
    op.settings.ops.gate_min_rows = 10**6  # no window can be long enough: the check fails
    tid, _ = op.state.add_trigger("online:test", PAIR, "online", reason="t")
    out = op.run_triggers()
    assert out[0]["status"] == "done" and not out[0]["accepted"]
    assert "too few" in out[0]["stability"]["reason"]
    tr = op.state.get_trigger(tid)
    assert tr["detail"]["rollout"] == REJECTED_ROLLOUT and "gate" not in tr["detail"]
    op.settings.ops.gate_min_rows = 100
    op.run_triggers()
    assert "gate" not in op.state.get_trigger(tid)["detail"]
    assert op.state.active_rollouts() == [] and op.registry.production_version(PAIR) == "1"


def test_update_equal_to_its_parent_is_not_registered(op) -> None:  # type: ignore[no-untyped-def]
    """Parent and update both shrunk to "no view" (β = 0: a 50-bar calibration segment
    shows no slope with confidence): no version, no rollout, the streak untouched."""
    op.state.set_online_enabled(PAIR, True)
    op.settings.online.calibration_bars = 50
    n_before = len(op.registry.versions(PAIR))
    tid, _ = op.state.add_trigger("online:same", PAIR, "online", reason="t")
    [out] = op.run_triggers()
    assert out["status"] == "unchanged" and out["update"]["beta"] == 0.0, out
    assert op.state.get_trigger(tid)["detail"]["rollout"] == "not started: unchanged"
    assert len(op.registry.versions(PAIR)) == n_before
    st = op.state.online_state(PAIR)
    assert st["last_result"] == "unchanged" and st["rejection_streak"] == 0
