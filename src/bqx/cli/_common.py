"""Shared CLI plumbing: settings, --json output, progress bars and error handling.

Commands stay thin: parse options, call the library, print. Heavy imports happen inside
commands so that ``bqx --help`` stays fast.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import typer
from rich import box
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
    rows: list[dict[Any, Any]],
    title: str | None = None,
    columns: list[str] | None = None,
    width: int | None = None,
) -> None:
    """Print rows as a rich table that fits the terminal (80 columns when not a terminal).

    Cells never wrap: numbers get 4 significant digits, timestamps (also ISO strings) are
    cut to the minute, headers wrap at their underscores only, and when the columns still
    do not fit, the rightmost ones are left out with a note saying which (``--json`` has
    everything)."""
    if not rows:
        console.print(f"[dim]{title + ': ' if title else ''}(nothing)[/dim]")
        return
    cols = columns or list(rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    heads = [str(c).replace("_", " ") for c in cols]
    # a column needs its longest word (cells wrap at spaces only) and wants its longest cell
    need = [
        max([len(w) for w in h.split()] + [len(w) for row in cells for w in row[i].split()] + [1])
        for i, h in enumerate(heads)
    ]
    widths = [max(need[i], *(len(row[i]) for row in cells)) for i in range(len(cols))]
    avail = width or console.width
    keep = len(cols)
    while True:
        over = sum(widths[:keep]) + 2 * (keep - 1) - avail  # 1 pad + 1 divider between columns
        for i in sorted(range(keep), key=lambda i: need[i] - widths[i]):  # most slack first
            cut = min(over, widths[i] - need[i])
            if cut > 0:
                widths[i] -= cut
                over -= cut
        if over <= 0 or keep == 1:
            break
        keep -= 1
    t = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for i in range(keep):
        t.add_column(heads[i], width=widths[i], overflow="fold")
    for row in cells:
        t.add_row(*row[:keep])
    if keep < len(cols):
        t.caption = f"not shown (narrow terminal; see --json): {', '.join(map(str, cols[keep:]))}"
    console.print(t, width=avail)


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?$")


def _fmt(v: Any) -> str:
    pd = sys.modules.get("pandas")  # not imported by the registry commands: no NaT then
    if v is None or (pd is not None and v is pd.NaT):
        return ""
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
        v = float(v)
        if not math.isfinite(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, datetime):  # pd.Timestamp included
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, str) and _ISO.match(v):
        return v[:16].replace("T", " ")
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
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
