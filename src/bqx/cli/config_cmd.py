"""``bqx config``: show the effective settings."""

from __future__ import annotations

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings

app = typer.Typer(
    help="Show settings (defaults < bqx.toml < BQX_* env vars).", no_args_is_help=True
)


@app.command("show")
@handle_errors
def show(as_json: bool = JsonOpt) -> None:
    """Print the effective settings, including resolved store/state/tracking URLs."""
    s = settings()
    d = s.public_dict()
    if as_json:
        print_json(d)
        return
    import json

    console.print_json(json.dumps(d, default=str))
