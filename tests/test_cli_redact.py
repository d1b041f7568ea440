"""18.16: no CLI output shows a database password (``bqx data generate``, ``data info``
title and ``--json``, ``config show --json``, error messages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "pw-s3cret-77"


def bqx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "bqx")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_cli_never_prints_the_store_password(temp_pg, tmp_path: Path) -> None:
    url = temp_pg.url.replace("postgres@", f"postgres:{SECRET}@")  # trust auth ignores it
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(BQX_HOME=str(tmp_path / "h"), BQX_STORE_URL=url, BQX_STATE_URL=url)
    runs = [
        bqx(env, "data", "generate", "--days", "1", "--pairs", "EURUSD"),
        bqx(env, "data", "generate", "--days", "1", "--pairs", "EURUSD", "--json"),
        bqx(env, "data", "info"),
        bqx(env, "data", "info", "--json"),
        bqx(env, "config", "show", "--json"),
        bqx(env, "config", "show"),
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert SECRET not in out, r.args
    assert "postgres:***@" in runs[3].stdout
    temp_pg.stop("immediate")  # an error message names the server, not the password
    r = bqx(env, "data", "info")
    assert r.returncode != 0 and SECRET not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
