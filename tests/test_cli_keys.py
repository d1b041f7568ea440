"""``bqx keys``: create (shown once), list (never secrets), revoke."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bqx.cli import app
from bqx.serving.auth import ApiKeys
from bqx.state import open_state

runner = CliRunner()


def _keys() -> ApiKeys:
    return ApiKeys(open_state())


def test_create_json_and_verify(_isolated_home: Path) -> None:
    r = runner.invoke(
        app, ["keys", "create", "--role", "trader", "--name", "desk", "--rate", "5", "--json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["role"] == "trader" and d["rate"] == 5 and d["name"] == "desk"
    assert "cannot be shown again" in d["warning"]
    p = _keys().verify(d["key"])
    assert p is not None and p.key_id == d["key_id"] and p.rate == 5
    assert (_isolated_home / "state.db").exists()


def test_create_plain_prints_key_once_with_warning() -> None:
    r = runner.invoke(app, ["keys", "create", "--role", "reader"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("bqx_") and "\n" not in key  # only the key on stdout
    assert "cannot be shown again" in r.stderr
    assert "default (100/s)" in r.stderr
    assert _keys().verify(key) is not None


def test_list_never_shows_secrets() -> None:
    created = [
        json.loads(runner.invoke(app, ["keys", "create", "--role", role, "--json"]).stdout)
        for role in ("reader", "admin")
    ]
    r = runner.invoke(app, ["keys", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["key_id"] for x in rows] == [c["key_id"] for c in created]
    assert all(set(x) >= {"key_id", "role", "status", "created_at"} for x in rows)
    for c in created:
        secret = c["key"].split("_", 2)[2]
        assert secret not in r.stdout
    assert "hash" not in rows[0] and "salt" not in rows[0]
    table = runner.invoke(app, ["keys", "list"])
    assert table.exit_code == 0 and created[0]["key_id"] in table.stdout
    assert all(c["key"].split("_", 2)[2] not in table.stdout for c in created)


def test_revoke() -> None:
    d = json.loads(runner.invoke(app, ["keys", "create", "--role", "reader", "--json"]).stdout)
    r = runner.invoke(app, ["keys", "revoke", d["key_id"]])
    assert r.exit_code == 0, r.output
    assert "Revoked" in r.stdout
    assert _keys().verify(d["key"]) is None
    again = runner.invoke(app, ["keys", "revoke", d["key"]])  # a pasted whole key works too
    assert again.exit_code == 0 and "already revoked" in again.stdout
    rows = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert rows[0]["status"] == "revoked"
    active = json.loads(runner.invoke(app, ["keys", "list", "--active-only", "--json"]).stdout)
    assert active == []


def test_errors_are_clear() -> None:
    r = runner.invoke(app, ["keys", "revoke", "ffffffffffff"])
    assert r.exit_code == 2 and "no API key" in r.stderr
    r = runner.invoke(app, ["keys", "create", "--role", "root"])
    assert r.exit_code == 2 and "unknown role" in r.stderr and "reader" in r.stderr
    r = runner.invoke(app, ["keys", "create", "--role", "reader", "--rate", "0"])
    assert r.exit_code == 2 and "rate" in r.stderr
    r = runner.invoke(app, ["keys", "create"])
    assert r.exit_code != 0
