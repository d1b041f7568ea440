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


def _one_line_summaries(t: typer.Typer) -> None:
    """Each command's summary in a group's command list as one flowing paragraph.

    Typer's rich help keeps the line breaks of a docstring's first paragraph in that list
    (not in the command's own ``--help``), so a summary wrapped in the source at 92
    columns showed as ragged lines at 80. The first paragraph, whitespace collapsed,
    becomes the command's ``short_help`` (where it has none of its own)."""
    import inspect

    for info in t.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and doc:
            first = inspect.cleandoc(doc).split("\n\n", 1)[0]
            if "\n" in first:
                info.short_help = " ".join(first.split())
    for group in t.registered_groups:
        if group.typer_instance is not None:
            _one_line_summaries(group.typer_instance)


_one_line_summaries(app)


def main() -> None:
    app()
