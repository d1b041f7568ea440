from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bqx.cli import app
from bqx.config import load_settings
from bqx.errors import ConfigError


def test_defaults_and_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("BQX_HOME", str(tmp_path / "h"))
    s = load_settings()
    assert s.home == tmp_path / "h"
    assert s.resolved_store_url == f"duckdb:///{tmp_path / 'h' / 'bars.duckdb'}"
    assert s.resolved_state_url.startswith("sqlite:///") and s.interval == timedelta(minutes=1)
    assert s.serve.cache_size == 10 and s.signals.threshold == 0.0005 and s.train.model == "lgbm_rf"


def test_toml_then_env_override(tmp_path, monkeypatch):
    (tmp_path / "bqx.toml").write_text(
        'bar_interval = "1h"\nhorizon = 24\n[serve]\nport = 9001\n[train]\nmodel = "lightgbm"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (
        s.interval == timedelta(hours=1)
        and s.horizon == 24
        and s.serve.port == 9001
        and s.train.model == "lightgbm"
    )
    monkeypatch.setenv("BQX_SERVE__PORT", "9002")
    monkeypatch.setenv("BQX_HORIZON", "12")
    s = load_settings()
    assert s.serve.port == 9002 and s.horizon == 12 and s.train.model == "lightgbm"


def test_durations_parse_as_pandas_does_without_importing_it():
    """bar_interval is parsed without pandas for the plain forms (CLI start-up, issue 15);
    every unit of the fast path means what pandas says, and other forms go to pandas."""
    import pandas as pd

    from bqx.config import _UNIT_S, parse_duration

    for unit in _UNIT_S:
        for n in (1, 5, 15, 60, 90):
            assert parse_duration(f"{n}{unit}") == pd.Timedelta(f"{n}{unit}").to_pytimedelta()
    for v in ("1 min", "1.5h", "00:05:00", "P1D", "2h30min"):
        assert parse_duration(v) == pd.Timedelta(v).to_pytimedelta()
    for bad in ("fortnightly", "1parsec", "nat", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_bad_settings_say_what_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("BQX_BAR_INTERVAL", "fortnightly")
    with pytest.raises(ConfigError, match="bar_interval"):
        load_settings()
    monkeypatch.delenv("BQX_BAR_INTERVAL")
    monkeypatch.setenv("BQX_STORE_URL", "mysql://x")
    with pytest.raises(ConfigError, match="duckdb:/// or postgresql://"):
        load_settings()
    monkeypatch.delenv("BQX_STORE_URL")
    monkeypatch.setenv("BQX_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_config_show_json(monkeypatch, tmp_path):
    monkeypatch.setenv("BQX_SERVE__WORKERS", "2")
    res = CliRunner().invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (
        d["serve"]["workers"] == 2
        and Path(d["resolved"]["store_url"][len("duckdb:///") :]).name == "bars.duckdb"
    )
    res = CliRunner().invoke(app, ["config", "show", "--json"], env={"BQX_BAR_INTERVAL": "nope"})
    assert res.exit_code == 2 and "bar_interval" in res.stderr


def test_readme_backtest_toml_example_loads(tmp_path, monkeypatch):
    """The [backtest] example in the README is valid settings (docs match the code)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```toml\n[backtest]\n", 1)[1].split("```", 1)[0]
    (tmp_path / "bqx.toml").write_text("[backtest]\n" + block)
    monkeypatch.chdir(tmp_path)
    bt = load_settings().backtest
    assert bt.commission_per_million == 20 and bt.sizing == "kelly" and bt.spread_pips == 0.8
    (tmp_path / "bqx.toml").write_text('[backtest]\nsizing = "martingale"\n')
    with pytest.raises(ConfigError, match="sizing"):
        load_settings()


@pytest.mark.parametrize(
    "args, option, says",
    [
        (["predict-batch", "--start", "garbage", "--end", "2024-01-01", "--out", "x.csv"],
         "--start", "is not a timestamp"),
        (["predict-batch", "--start", "2024-01-01", "--end", "0199-01-01", "--out", "x.csv"],
         "--end", "supported range 1677"),
        (["train", "--pairs", "EURUSD", "--start", "3024-01-01"], "--start", "supported range"),
        (["data", "generate", "--days", "1", "--start", "nope"], "--start", "is not a timestamp"),
        (["backtest", "--signals", "s.csv", "--end", "0001-01-01"], "--end", "supported range"),
        (["features", "build", "--start", "0199-01-01"], "--start", "supported range"),
    ],
)  # fmt: skip
def test_time_options_fail_with_a_usage_error_naming_the_option(args, option, says):
    """Bad or out-of-range times are usage errors (exit 2) before any work, not tracebacks."""
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and option in text and says in text, text
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_to_utc_range():
    from bqx.calendar import TimestampRangeError, to_utc

    assert to_utc("2262-04-11") == to_utc("2262-04-11T00:00:00Z")
    with pytest.raises(TimestampRangeError, match="outside the supported range"):
        to_utc("0199-08-20T14:43:25")
    with pytest.raises(ValueError):  # still a ValueError for callers that catch those
        to_utc("9999-01-01")


def test_broken_toml_and_out_of_range_ports_are_config_errors(tmp_path, monkeypatch):
    (tmp_path / "bqx.toml").write_text("horizon = [\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not valid TOML"):  # was a TOMLDecodeError traceback
        load_settings()
    (tmp_path / "bqx.toml").write_text("[serve]\nport = 99999\n")
    with pytest.raises(ConfigError, match=r"serve\.port"):
        load_settings()
    res = CliRunner().invoke(app, ["config", "show"])
    assert res.exit_code == 2 and "serve.port" in res.output
