"""``bqx backtest``: the --signals fast path end to end against a temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from bqx.cli import backtest_cmd
from bqx.config import load_settings
from bqx.data.simulator import generate, oracle_prediction
from bqx.data.store import open_store


@pytest.fixture
def app() -> typer.Typer:
    """Only the backtest command, so the test does not depend on other command groups."""
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    backtest_cmd.register(a)
    return a


@pytest.fixture
def signals_file(tmp_path: Path) -> Path:
    s = load_settings()
    s.ensure_home()
    bars = generate(days=6, pairs=["EURUSD", "USDJPY"], seed=2, signal_strength=0.2).bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    parts = [
        pd.DataFrame(
            {"pair": p, "ts": g["ts"], "prediction": oracle_prediction(g["close"].to_numpy(), 0.2)}
        )
        for p, g in bars.groupby("pair")
    ]
    path = tmp_path / "preds.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


def test_signals_fast_path_writes_outputs_and_json(app, signals_file, tmp_path):
    out = tmp_path / "bt"
    r = CliRunner().invoke(
        app,
        [
            "backtest", "--signals", str(signals_file), "--out", str(out), "--threshold", "0.0002",
            "--spread-pips", "1", "--commission-per-million", "20", "--json",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["period"]["pairs"] == ["EURUSD", "USDJPY"]
    assert set(d["pairs"]) == {"EURUSD", "USDJPY"}  # per-pair metrics
    assert d["portfolio"]["trades"] > 10
    assert d["portfolio"]["commission"] > 0 and d["portfolio"]["spread_cost"] > 0
    assert d["conventions"]["periods_per_year"] == 260
    assert "all" in d["prediction"]  # y_true computed from the store's closes
    for name in ("trades.csv", "metrics.json", "equity.parquet", "report.html"):
        assert (out / name).is_file()
    # the human summary prints a table and the report path
    r = CliRunner().invoke(
        app, ["backtest", "--signals", str(signals_file), "--out", str(out), "--pairs", "EURUSD"]
    )
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "EURUSD" in text and "report.html" in text and "USDJPY" not in text


def test_walk_forward_without_data_is_a_clear_error(app):
    r = CliRunner().invoke(
        app, ["backtest", "--windows", "3", "--model", "rf", "--pairs", "EURUSD"]
    )
    assert r.exit_code == 2
    assert "bar store is empty" in " ".join(r.output.split())


def test_bad_signals_file_is_a_clear_error(app, tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"pair": ["EURUSD"], "when": ["2024-01-01"]}).to_csv(p, index=False)
    r = CliRunner().invoke(app, ["backtest", "--signals", str(p)])
    assert r.exit_code == 2 and "needs columns pair, ts" in " ".join(r.output.split())


def test_registered_in_the_bqx_app():
    from bqx.cli import app as bqx_app

    names = {c.name for c in bqx_app.registered_commands}
    assert "backtest" in names


def test_settings_set_the_cost_model_and_options_override_it(
    app, signals_file, tmp_path, monkeypatch
):
    """[backtest] in bqx.toml / BQX_BACKTEST__* gives the defaults; an option wins."""

    def run(*extra: str) -> dict:
        r = CliRunner().invoke(
            app,
            [
                "backtest", "--signals", str(signals_file), "--out", str(tmp_path / "o"),
                "--threshold", "0.0002", "--json", *extra,
            ],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    by_option = run("--spread-pips", "1", "--commission-per-million", "20")
    monkeypatch.setenv("BQX_BACKTEST__SPREAD_PIPS", "1")
    monkeypatch.setenv("BQX_BACKTEST__COMMISSION_PER_MILLION", "20")
    by_setting = run()
    assert by_setting["portfolio"] == by_option["portfolio"]
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["config"]["commission"] == pytest.approx(2e-5)
    assert written["config"]["spread_pips"] == 1
    overridden = run("--commission-per-million", "0")
    assert overridden["portfolio"]["commission"] == 0
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["config"]["spread_pips"] == 1 and written["config"]["commission"] == 0
    # sizes follow the balance, so the spread paid moves a little without commissions
    assert overridden["portfolio"]["spread_cost"] == pytest.approx(
        by_setting["portfolio"]["spread_cost"], rel=0.01
    )
    monkeypatch.setenv("BQX_BACKTEST__SIZING", "martingale")
    r = CliRunner().invoke(app, ["backtest", "--signals", str(signals_file)])
    assert r.exit_code != 0 and "sizing" in " ".join(r.output.split())


def test_bad_option_value_is_a_clear_error(app, signals_file):
    r = CliRunner().invoke(app, ["backtest", "--signals", str(signals_file), "--sizing", "x"])
    assert r.exit_code == 2 and "sizing must be 'fixed' or 'kelly'" in " ".join(r.output.split())


@pytest.mark.parametrize(
    "name, content",
    [("junk.csv", bytes(range(256)) * 8), ("empty.csv", b""), ("junk.parquet", b"\xff\xfe\x00")],
)
def test_unreadable_signals_file_is_a_clear_error(app, tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    r = CliRunner().invoke(app, ["backtest", "--signals", str(p)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "cannot read signals file" in text, text
