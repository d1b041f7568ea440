"""Registry: approve / promote / rollback round trip, history, and crash safety."""

from __future__ import annotations

import numpy as np
import pytest

from bqx.config import Settings
from bqx.errors import ModelNotFoundError, RegistryError
from bqx.registry import PRODUCTION, Registry
from bqx.training.train import train_frame


@pytest.fixture(scope="module")
def trained(signal_frame, tmp_path_factory):
    home = tmp_path_factory.mktemp("reg")
    s = Settings(home=home)
    s.train.approval_rule = "never"
    small = signal_frame.iloc[-20000:]
    r1 = train_frame("EURUSD", small, s, model="ridge", selection_rows=4000)
    r2 = train_frame(
        "EURUSD", small, s, model="lightgbm", params={"n_estimators": 40}, selection_rows=4000
    )
    return s, r1, r2


def test_round_trip(trained):
    s, r1, r2 = trained
    reg = Registry(s)
    v1 = reg.log_and_register(r1)
    v2 = reg.log_and_register(r2)
    assert (v1, v2) == ("1", "2")
    # each registration is a lifecycle event in the outbox (relayed to the event stream)
    reg_ev = [e["payload"] for e in reg.state.pending_events() if e["topic"] == "models"]
    assert [(e["event"], e["version"]) for e in reg_ev] == [
        ("registered", "1"),
        ("registered", "2"),
    ]
    info = reg.get("EURUSD", v1)
    assert info.approval_status == "PendingManualApproval" and info.registration == "complete"
    with pytest.raises(RegistryError, match="approve"):
        reg.promote("EURUSD", v1)
    with pytest.raises(ModelNotFoundError):
        reg.load("EURUSD")  # nothing in production yet
    reg.approve("EURUSD", v1, reason="looked good")
    reg.promote("EURUSD", v1, reason="first")
    assert reg.production_version("EURUSD") == "1"
    reg.approve("EURUSD", v2)
    reg.promote("EURUSD", v2, reason="better")
    assert reg.production_version("EURUSD") == "2"
    art = reg.load("EURUSD")
    assert art.version == "2" and art.model == "lightgbm"
    x = np.zeros(len(art.all_columns))
    assert np.isfinite(art.predict_vector(x))
    with pytest.raises(RegistryError, match="in production"):
        reg.reject("EURUSD", v2)
    reg.rollback("EURUSD", reason="regression")
    assert reg.production_version("EURUSD") == "1"
    with pytest.raises(RegistryError, match="no earlier production"):
        reg.rollback("EURUSD")
    h = reg.history("EURUSD")
    assert list(h["action"]) == ["approve", "promote", "approve", "promote", "rollback"]
    last = h.iloc[-1]
    assert (last["from_version"], last["to_version"], last["reason"]) == ("2", "1", "regression")
    df = reg.list_models("EURUSD")
    assert list(df["version"]) == ["1", "2"]
    assert PRODUCTION in df.set_index("version").loc["1", "aliases"]
    reg.reject("EURUSD", v2, reason="worse live")
    with pytest.raises(RegistryError, match="Rejected"):
        reg.promote("EURUSD", v2)


def test_crash_mid_registration_leaves_no_production(trained, monkeypatch):
    s, r1, _ = trained
    s2 = Settings(home=s.home / "crash")
    s2.train.approval_rule = "beats_naive"
    reg = Registry(s2)
    r1.approved = True  # would be auto-approved...
    real = reg.client.set_model_version_tag

    def boom(name, version, key, value):  # type: ignore[no-untyped-def]
        if key == "registration" and value == "complete":
            raise RuntimeError("simulated crash")
        return real(name, version, key, value)

    monkeypatch.setattr(reg.client, "set_model_version_tag", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        reg.log_and_register(r1)
    monkeypatch.undo()
    info = reg.get("EURUSD", "1")
    assert info.registration == "incomplete"
    assert info.approval_status == "PendingManualApproval"  # the approval was never applied
    assert reg.production_version("EURUSD") is None
    with pytest.raises(RegistryError, match="not completely registered"):
        reg.approve("EURUSD", "1")
    with pytest.raises(RegistryError, match="not completely registered"):
        reg.promote("EURUSD", "1")


def test_promotion_reverts_alias_when_history_write_fails(trained, monkeypatch):
    s, r1, _ = trained
    s3 = Settings(home=s.home / "hist")
    s3.train.approval_rule = "always"
    reg = Registry(s3)
    r1.approved = True
    v = reg.log_and_register(r1)

    def fail(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("state db down")

    monkeypatch.setattr(reg.state, "record_promotion", fail)
    with pytest.raises(RuntimeError):
        reg.promote("EURUSD", v)
    assert reg.production_version("EURUSD") is None


def test_fast_reads_equal_the_mlflow_client(trained, monkeypatch):
    """`bqx models list/show` read MLflow's tables directly (no mlflow import, issue 15);
    the answers must equal the MLflow client's, aliases, tags and artifact meta included."""
    from bqx.registry import sqlread

    s, r1, r2 = trained
    reg = Registry(s)
    if len(reg.versions("EURUSD")) < 2:
        reg.log_and_register(r1)
        reg.log_and_register(r2)
    reg.approve("EURUSD", "2", reason="fast read test")
    reg.promote("EURUSD", "2", reason="fast read test")
    fast = [i.as_dict() for i in reg.versions()]
    fast_prod = reg.get("EURUSD").as_dict()
    assert sqlread.versions(reg.uri, None) is not None  # the fast path did answer
    with monkeypatch.context() as m:
        m.setattr(sqlread, "versions", lambda *a, **k: None)  # force the MLflow client
        slow = [i.as_dict() for i in reg.versions()]
        slow_prod = reg.get("EURUSD").as_dict()
    assert fast == slow and len(fast) >= 2
    assert fast_prod == slow_prod and "production" in fast_prod["aliases"]
    meta = sqlread.local_meta(fast_prod["source"])
    loaded = reg.load("EURUSD").meta()
    loaded["selection"].pop("load_seconds", None)
    import json

    assert meta == json.loads(json.dumps(loaded, default=str))
    assert sqlread.versions("http://127.0.0.1:1/", None) is None  # a server: client answers


def _populated(trained) -> Registry:
    s, r1, r2 = trained
    reg = Registry(s)
    if len(reg.versions("EURUSD")) < 2:
        reg.log_and_register(r1)
        reg.log_and_register(r2)
    if reg.production_version("EURUSD") != "2":
        reg.approve("EURUSD", "2", reason="import test")
        reg.promote("EURUSD", "2", reason="import test")
    return reg


def test_local_artifacts_load_in_place_equal_to_the_mlflow_download(trained, monkeypatch):
    """A file:// artifact is loaded from its directory without `import mlflow` (serving
    workers' first model, rollout candidates); it must equal what MLflow's download gives."""
    from bqx.registry import sqlread

    reg = _populated(trained)
    info = reg.get("EURUSD")
    assert sqlread.local_dir(info.source) is not None  # the in-place path is taken
    a = reg.load("EURUSD")
    with monkeypatch.context() as m:
        m.setattr(sqlread, "local_dir", lambda source: None)  # force mlflow's download
        b = reg.load("EURUSD")
    x = np.linspace(-1.0, 1.0, len(a.all_columns))
    assert (a.version, a.model, a.features) == (b.version, b.model, b.features)
    assert a.predict_vector(x) == b.predict_vector(x)
    assert sqlread.local_dir("s3://bucket/x") is None
    fresh = Registry(reg.settings)  # a server's readiness probe: the tables answer
    assert fresh.reads_directly() and fresh.ping() and fresh._client is None
    assert sqlread.local_dir("file:///nonexistent/dir") is None


def test_history_without_pandas_equals_the_dataframe_path(trained):
    """`bqx models history` reads the promotions table with sqlite3 (no SQLAlchemy, state
    package or pandas); rows and the JSON the command prints equal the DataFrame path's."""
    import json

    from bqx.cli.models_cmd import _iso_ms
    from bqx.jsonutil import dumps
    from bqx.registry import sqlread

    reg = _populated(trained)
    fast = sqlread.promotion_records(reg.settings.resolved_state_url, "EURUSD")
    assert fast is not None and len(fast) >= 2  # the sqlite3 path did answer
    assert fast == reg.state.promotion_records("EURUSD") == reg.history_records("EURUSD")
    printed = json.loads(dumps([{**r, "at": _iso_ms(r["at"])} for r in fast]))
    assert printed == json.loads(dumps(reg.history("EURUSD")))
    assert sqlread.promotion_records("postgresql://x@127.0.0.1:1/db", "EURUSD") is None


_WRAP = (
    "import json, sys\n"
    "from bqx.cli import main\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = ('mlflow', 'pandas', 'numpy', 'sqlalchemy', 'sklearn', 'bqx.state')\n"
    "sys.stderr.write('\\nIMPORTED ' + json.dumps([m for m in heavy if m in sys.modules]))\n"
)


@pytest.mark.parametrize(
    "args", [["list"], ["show", "EURUSD"], ["history", "EURUSD"]], ids=lambda a: a[0]
)
def test_registry_commands_import_neither_mlflow_nor_pandas(trained, args):
    """Issue 15: `bqx models list/show/history --json` answer from the tables (< 1 s) —
    a fresh process running the real CLI must not have imported MLflow, pandas, numpy,
    SQLAlchemy or the state package, and must still print the versions."""
    import json
    import os
    import subprocess
    import sys

    reg = _populated(trained)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env["BQX_HOME"] = str(reg.settings.home)
    r = subprocess.run(
        [sys.executable, "-c", _WRAP, "models", *args, "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.rsplit("IMPORTED ", 1)[1]) == []
    out = json.loads(r.stdout)
    if args[0] == "list":
        assert [v["version"] for v in out] == ["1", "2"]
    elif args[0] == "show":
        assert out["version"]["version"] == "2" and out["meta"]["features"]
    else:
        assert [h["action"] for h in out][-1] == "promote" and out[-1]["at"].endswith("Z")
