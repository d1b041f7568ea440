"""``bqx monitor status`` on a project with registered production versions (issue 12
item 8): the versions come from the registry, a pair without any pass yet is listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from .conftest import PAIRS_TRAINED


def test_status_lists_production_versions(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bqx.cli import app

    monkeypatch.setenv("BQX_HOME", str(home))
    res = CliRunner().invoke(app, ["monitor", "status", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output[res.output.index("{") :])
    assert {r["pair"] for r in st["pairs"]} == set(PAIRS_TRAINED)
    assert all(r["production"] == "1" and r["last_pass_at"] is None for r in st["pairs"])
    assert st["last_pass"] is None
    res = CliRunner().invoke(app, ["monitor", "status", "--pair", "eurusd"])
    assert res.exit_code == 0 and "v1 prod" in res.output and "bqx monitor run" in res.output
