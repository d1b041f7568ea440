"""``bqx online enable|disable|status``: state round trip, JSON, 80-column table."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_enable_disable_status() -> None:
    from bqx.cli import app

    r = CliRunner()
    assert r.invoke(app, ["online", "enable", "--pairs", "eurusd,gbpusd"]).exit_code == 0
    assert r.invoke(app, ["online", "disable", "--pairs", "GBPUSD"]).exit_code == 0
    out = r.invoke(app, ["online", "status", "--json"])
    assert out.exit_code == 0, out.output
    rows = {p["pair"]: p for p in json.loads(out.output)["pairs"]}
    assert rows["EURUSD"]["enabled"] and not rows["GBPUSD"]["enabled"]
    assert rows["EURUSD"]["rejection_streak"] == 0 and not rows["EURUSD"]["paused"]
    text = r.invoke(app, ["online", "status"]).output
    assert "EURUSD" in text and max(len(line) for line in text.splitlines()) <= 80
    bad = r.invoke(app, ["online", "enable", "--pairs", "XXXYYY"])
    assert bad.exit_code != 0 and "unknown pair" in bad.output
