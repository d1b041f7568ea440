"""kill -9 in the middle of writes that must be atomic (issue 11 item 4, issue 18.15):
``bqx data ingest`` mid-upsert on DuckDB and on PostgreSQL, ``bqx train --promote`` during
registration and approval. Crash points (``BQX_CRASH_AT``) make the process SIGKILL itself
at a deterministic place between writes; the store/registry must hold all or nothing."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import clean_env, run_bqx

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

INGEST_DAYS = 150  # 155,580 one-minute EURUSD bars (~10 MB of CSV)


def bqx_rc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    from bqx.infra.drill import bqx_exe

    return subprocess.run([bqx_exe(), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bqx.data.simulator import generate

    bars = generate(days=INGEST_DAYS, pairs="EURUSD", seed=3).bars
    p = tmp_path_factory.mktemp("ingest") / "EURUSD_M1.csv"
    bars.drop(columns=["pair"]).to_csv(p, index=False)
    head = p.parent / "EURUSD_head.csv"
    bars.drop(columns=["pair"]).head(1000).to_csv(head, index=False)
    return p


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_kill9_mid_upsert_writes_all_or_nothing(
    backend: str, big_csv: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from bqx.data.store import open_store

    home = tmp_path / "h"
    env = clean_env(BQX_HOME=str(home))
    if backend == "postgres":
        env["BQX_STORE_URL"] = request.getfixturevalue("temp_pg").url
    run_bqx(env, "data", "ingest", str(big_csv.parent / "EURUSD_head.csv"), "--json")
    n_rows = sum(1 for _ in big_csv.open()) - 1
    r = bqx_rc(
        {**env, "BQX_CRASH_AT": "store.upsert.before_commit"}, "data", "ingest", str(big_csv)
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    url = env.get("BQX_STORE_URL") or f"duckdb:///{home / 'bars.duckdb'}"
    from datetime import timedelta

    s = open_store(url, timedelta(minutes=1))
    assert s.summary()["rows"].sum() == 1000  # none of the killed ingest, all of the first
    s.close()
    out = json.loads(run_bqx(env, "data", "ingest", str(big_csv), "--json"))
    assert out["upsert"]["inserted"] == n_rows - 1000 and out["upsert"]["unchanged"] == 1000
    s = open_store(url, timedelta(minutes=1))
    assert s.summary()["rows"].sum() == n_rows
    s.close()


@pytest.mark.slow
def test_kill9_during_train_approval_leaves_nothing_promotable(
    trained_home: Path, tmp_path: Path
) -> None:
    """kill -9 of ``bqx train --promote`` between the approval's history row and its tags
    (the in-process crash test in tests/training covers a crash mid-registration)."""
    from bqx.config import Settings
    from bqx.errors import RegistryError
    from bqx.registry import Registry

    home = tmp_path / "h"
    shutil.copytree(trained_home, home)
    env = clean_env(BQX_HOME=str(home), BQX_TRAIN__APPROVAL_RULE="always")
    train = ("train", "--pairs", "EURUSD", "--model", "ridge", "--promote", "--json")
    reg = Registry(Settings(home=home))
    before = {v.version for v in reg.versions("EURUSD")}
    r = bqx_rc({**env, "BQX_CRASH_AT": "registry.approval.history_written"}, *train)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    listed = json.loads(run_bqx(env, "models", "list", "--pair", "EURUSD", "--json"))
    assert "production" in json.dumps(listed)  # `bqx models list` works
    vs = {v.version: v for v in reg.versions("EURUSD")}
    (bad,) = [k for k in vs if k not in before]
    assert [k for k, v in vs.items() if "production" in v.aliases] == ["1"]
    assert vs[bad].approval_status != "Approved"
    with pytest.raises(RegistryError):
        reg.promote("EURUSD", bad)
    out = run_bqx(env, *train)  # a re-run registers and promotes cleanly
    assert "registration failed" not in out
    vs = {v.version: v for v in reg.versions("EURUSD")}
    new = [k for k in vs if k not in before and k != bad]
    assert len(new) == 1 and "production" in vs[new[0]].aliases
    assert vs[new[0]].approval_status == "Approved" and reg.approval_recorded("EURUSD", new[0])


def test_approved_tag_without_history_is_not_promotable(trained_home: Path, tmp_path: Path) -> None:
    """18.15: what a kill -9 between the approval tags and the history row used to leave
    (tags say Approved, the history has no approval) must not be promotable."""
    import sqlite3

    from bqx.config import Settings
    from bqx.errors import RegistryError
    from bqx.registry import Registry

    home = tmp_path / "h"
    shutil.copytree(trained_home, home)
    reg = Registry(Settings(home=home))
    assert reg.get("EURUSD", "2").approval_status == "Approved"
    with sqlite3.connect(home / "state.db") as con:
        n = con.execute(
            "DELETE FROM promotions WHERE action = 'approve' AND pair = 'EURUSD' "
            "AND to_version = '2'"
        ).rowcount
    assert n == 1
    with pytest.raises(RegistryError, match="not in the promotion history"):
        reg.promote("EURUSD", "2")
    reg.approve("EURUSD", "2", reason="re-approved after the crash")
    assert reg.promote("EURUSD", "2").version == "2"
