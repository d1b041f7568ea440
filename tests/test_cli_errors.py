"""Bad command-line values are usage errors (exit 2, naming the option), never tracebacks.

Each case here was a traceback (KeyError, ValueError, ...) before it was fixed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bqx.cli import app


@pytest.mark.parametrize(
    "args, option, says",
    [
        (["train", "--pairs", "EURUSD", "--model", "nope"], "--model", "unknown model 'nope'"),
        (["train", "--pairs", "EURUSD", "--backend", "nope"], "--backend", "unknown backend"),
        (["tune", "--pair", "EURUSD", "--model", "svm"], "--model", "unknown model"),
        (["backtest", "--pairs", "EURUSD", "--model", "nope"], "--model", "unknown model"),
        (["backtest", "--pairs", "EURUSD", "--windows", "0"], "--windows", "greater than or equal to 1"),
        (["data", "generate", "--days", "-3"], "--days", "greater than or equal to 0.01"),
        (["data", "generate", "--days", "1", "--signal-strength", "5"], "--signal-strength",
         "less than or equal to 0.499"),
        (["serve", "--port", "99999"], "--port", "65535"),
        (["serve", "--workers", "0"], "--workers", "greater than or equal to 1"),
    ],
)  # fmt: skip
def test_bad_option_values_are_usage_errors(args, option, says):
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and option in text and says in text, text


def test_cli_model_names_match_the_model_zoo():
    from bqx.cli._common import MODEL_NAMES
    from bqx.training.models import MODELS

    assert MODEL_NAMES == MODELS


@pytest.mark.parametrize(
    "args",
    [
        ["features", "build", "--start", "2024-01-03", "--end", "2024-01-02"],
        ["predict-batch", "--start", "2024-02-01", "--end", "2024-01-01", "--out", "x.csv"],
        ["train", "--pairs", "EURUSD", "--start", "2024-02-01", "--end", "2024-01-01"],
        ["train", "--pairs", "EURUSD", "--end", "2024-01-01", "--start", "2024-02-01"],
    ],
)
def test_end_before_start_is_a_usage_error(args):
    """It used to build or predict nothing and report success."""
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and "--end" in text and "is before --start" in text, text
