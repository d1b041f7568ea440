"""``bqx features build / catalog / show / check-lookahead`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from bqx.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def test_features_commands_end_to_end(_isolated_home: Path) -> None:
    code, _, err = run("data", "generate", "--days", "4", "--pairs", "all", "--json")
    assert code == 0, err

    code, out, err = run("features", "build", "--pairs", "EURUSD", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["months_built"] == {"EURUSD": ["2024-01"]}
    assert d["rows_written"] > 3000 and d["bytes_written"] > 0 and d["warnings"] == []
    assert (_isolated_home / "features" / "pair=EURUSD" / "month=2024-01").is_dir()

    # a rerun with unchanged bars rebuilds nothing
    code, out, _ = run("features", "build", "--pairs", "EURUSD", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["months_built"] == {} and d["months_skipped"] == {"EURUSD": ["2024-01"]}
    assert d["rows_written"] == 0
    # human output
    code, out, _ = run("features", "build", "--pairs", "EURUSD")
    assert code == 0 and "skipped 1 unchanged" in out

    code, out, _ = run("features", "catalog", "--json")
    assert code == 0
    cat = json.loads(out)
    assert len(cat) == 809
    assert set(cat[0]) >= {"name", "base", "family", "lag", "lookback", "description"}
    code, out, _ = run("features", "catalog", "--family", "bollinger")
    assert code == 0 and "bb_pctb_20" in out and "rsi_14" not in out
    code, _, err = run("features", "catalog", "--family", "nope")
    assert code == 2 and "unknown family" in err

    code, out, err = run("features", "show", "EURUSD", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["pair"] == "EURUSD" and s["columns"] == 809 and len(s["values"]) == 809
    assert s["asof"] == s["requested"]
    assert np.isfinite(s["values"]["rsi_14"]) and np.isfinite(s["values"]["w60_avg_lag61"])
    code, out, err = run("features", "show", "EURUSD", "-t", "2024-01-03 12:00", "--json")
    assert code == 0, err
    assert json.loads(out)["asof"].startswith("2024-01-03T12:00")
    code, out, _ = run("features", "show", "EURUSD", "--family", "time")
    assert code == 0 and "hour_sin" in out and "8 columns" in out

    code, out, err = run("features", "check-lookahead", "--samples", "3")
    assert code == 0, out + err
    assert "no lookahead" in out
    code, out, _ = run(
        "features", "check-lookahead", "--samples", "2", "--pairs", "EURUSD,USDJPY", "--json"
    )
    assert code == 0
    r = json.loads(out)
    assert r["ok"] and r["pairs"] == ["EURUSD", "USDJPY"] and r["comparisons"] == 4


PLUGIN = """
import numpy as np

from bqx import features as F
from bqx.features.context import Family, Spec


def next_close(ctx, pos):
    out = np.full(len(pos), np.nan)
    ok = pos + 1 < ctx.n
    out[ok] = ctx.c[pos[ok] + 1]
    return out[:, None]


F.register_family(Family("peek", False, (Spec("peek_next", "peek", "next close", 0),), next_close))
"""


def test_check_lookahead_with_a_leaking_plugin(_isolated_home: Path, tmp_path: Path) -> None:
    """A user family loaded with --plugin is audited; a leak gives exit code 1 and a table."""
    import sys

    from bqx import features as F

    plugin = tmp_path / "my_features.py"
    plugin.write_text(PLUGIN)
    code, _, err = run("data", "generate", "--days", "4", "--pairs", "all", "--json")
    assert code == 0, err
    try:
        code, out, _ = run("features", "catalog", "--plugin", str(plugin), "--family", "peek")
        assert code == 0 and "peek_next" in out
        code, out, _ = run(
            "features", "check-lookahead", "--samples", "2", "--pairs", "EURUSD",
            "--plugin", str(plugin),
        )  # fmt: skip
    finally:
        F.unregister_family("peek")
        for name in [m for m in sys.modules if m.startswith("bqx_plugin_")]:
            del sys.modules[name]
    assert code == 1
    assert "LOOKAHEAD" in out and "peek_next" in out
    code, _, err = run("features", "catalog", "--plugin", "no_such_module_xyz")
    assert code == 2 and "no module named" in err


def test_missing_volume_is_reported(_isolated_home: Path) -> None:
    from bqx.config import load_settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store

    s = load_settings()
    s.ensure_home()
    bars = generate(days=3, seed=1, start="2024-02-06").bars
    bars.loc[bars["pair"] == "EURUSD", "volume"] = np.nan
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    code, out, err = run("features", "build", "--pairs", "EURUSD,GBPUSD", "--json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == [
        "EURUSD: no volume in the source: 10 volume features and 1 technical feature (mfi_14) "
        "will be NaN (15 of 809 columns)"
    ]
    code, out, err = run("features", "build", "--pairs", "EURUSD", "--force")
    assert code == 0
    assert "no volume in the source" in err
