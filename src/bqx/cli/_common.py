"""Shared CLI plumbing: settings, --json output, progress bars and error handling.

Commands stay thin: parse options, call the library, print. Heavy imports happen inside
commands so that ``bqx --help`` stays fast.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bqx.training import MODELS

console = Console(stderr=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def settings(**overrides: Any) -> Any:
    from bqx.config import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def print_json(obj: Any) -> None:
    from bqx.jsonutil import dumps

    sys.stdout.write(dumps(obj) + "\n")


def table(
    rows: list[dict[Any, Any]], title: str | None = None, columns: list[str] | None = None
) -> None:
    """Print rows as a rich table."""
    if not rows:
        console.print(f"[dim]{title + ': ' if title else ''}(nothing)[/dim]")
        return
    cols = columns or list(rows[0].keys())
    t = Table(title=title, show_lines=False)
    for c in cols:
        t.add_column(str(c), overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(r.get(c)) for c in cols])
    console.print(t)


def _fmt(v: Any) -> str:
    import pandas as pd

    if v is None or v is pd.NaT:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, pd.Timestamp | datetime):
        return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M")
    return str(v)


@contextmanager
def progress_bar(
    description: str, total: int | None = None, enabled: bool = True
) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, tot: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)

        def update(done: int, tot: int) -> None:
            prog.update(task, completed=done, total=tot)

        yield update


def parse_time(value: str | None, name: str | None = None) -> Any:
    """A CLI time (naive = UTC) as a UTC Timestamp, or None; a bad or out-of-range value is
    a usage error naming the option (``name``, e.g. ``"--start"``)."""
    if value is None or value == "":
        return None
    from bqx.calendar import TimestampRangeError, to_utc

    try:
        return to_utc(value)
    except TimestampRangeError as e:
        raise typer.BadParameter(str(e), param_hint=name) from e
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(
            f"{value!r} is not a timestamp like 2024-03-01 or 2024-03-01T12:00 (UTC)",
            param_hint=name,
        ) from e


def time_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """Typer callback for ``--start``/``--end``-style options: fail at parse time with a
    usage error that names the option, instead of a traceback deep in the command (or an
    empty result when ``--end`` is before ``--start``)."""
    t = parse_time(value)
    if t is None:
        return value
    # click processes options in command-line order: check whichever of the two comes last
    other = {"end": "start", "start": "end"}.get(param.name or "")
    seen = parse_time(ctx.params.get(other)) if other else None
    if seen is not None:
        start, end = (seen, t) if other == "start" else (t, seen)
        if start > end:
            raise typer.BadParameter(f"--end {end} is before --start {start}")
    return value


#: Model names ``bqx train/tune/backtest --model`` accept.
MODEL_NAMES = MODELS


def model_option(value: str | None) -> str | None:
    """Typer callback: ``--model`` must be one of :data:`MODEL_NAMES`."""
    if value is not None and value not in MODEL_NAMES:
        raise typer.BadParameter(f"unknown model {value!r}; choose one of {', '.join(MODEL_NAMES)}")
    return value


def backend_option(value: str) -> str:
    """Typer callback: ``--backend`` is ``local`` or ``ray``."""
    if value not in ("local", "ray"):
        raise typer.BadParameter(f"unknown backend {value!r}; use 'local' or 'ray'")
    return value


def handle_errors(fn: F) -> F:
    """Turn BqxError into a clear message and exit code 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bqx.errors import BqxError
        from bqx.infra.redact import redact

        try:
            return fn(*args, **kwargs)
        except BqxError as e:
            err_console.print(f"[bold red]error:[/bold red] {redact(e.message)}")
            if e.hint:
                err_console.print(f"[yellow]hint:[/yellow] {e.hint}")
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]
