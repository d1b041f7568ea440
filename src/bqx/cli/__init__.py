"""The ``bqx`` command line. Each sub-command group lives in its own module."""

from __future__ import annotations

import typer

from bqx.cli import config_cmd, data_cmd

app = typer.Typer(
    name="bqx",
    help="BQX ML: FX minute bars -> causal features -> per-pair models -> served signals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")


def _register_optional() -> None:
    """Command groups added by later layers register here (import errors are real errors)."""
    import importlib

    for mod, name in (
        ("bqx.cli.features_cmd", "features"),
        ("bqx.cli.train_cmd", None),
        ("bqx.cli.models_cmd", "models"),
        ("bqx.cli.serve_cmd", None),
        ("bqx.cli.keys_cmd", "keys"),
        ("bqx.cli.backtest_cmd", None),
        ("bqx.cli.monitor_cmd", None),
        ("bqx.cli.ops_cmd", None),
        ("bqx.cli.rollout_cmd", "rollout"),
        ("bqx.cli.experiments_cmd", "experiments"),
        ("bqx.cli.forensics_cmd", "forensics"),
        ("bqx.cli.events_cmd", "events"),
        ("bqx.cli.paper_cmd", "paper"),
        ("bqx.cli.online_cmd", "online"),
    ):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        if name is None:
            m.register(app)
        else:
            app.add_typer(m.app, name=name)


_register_optional()


def main() -> None:
    app()
