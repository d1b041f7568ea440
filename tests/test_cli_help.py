"""Command lists in ``--help`` read as flowing text at 80 columns: each command's summary is
one paragraph without the source's line breaks (Typer's rich help keeps them in the list)."""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
from typing import Any

import typer.main

from bqx.cli import app


def _commands(cmd: Any, path: str = "bqx") -> list[tuple[str, Any]]:
    out = [(path, cmd)]
    if isinstance(getattr(cmd, "commands", None), dict):  # a group (Typer vendors click)
        for name, sub in cmd.commands.items():
            out += _commands(sub, f"{path} {name}")
    return out


def test_every_command_summary_is_one_paragraph_without_line_breaks():
    bad = []
    cmds = _commands(typer.main.get_command(app))
    assert len(cmds) > 60  # every group's commands were walked
    for path, cmd in cmds[1:]:
        text = cmd.short_help or cmd.help or ""
        first = inspect.cleandoc(text).split("\n\n", 1)[0]
        if "\n" in first:
            bad.append((path, first[:60]))
    assert not bad, bad


def test_a_group_list_flows_at_80_columns():
    """The rendered list: ``bqx paper --help`` shows the compare summary on full lines."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "from bqx.cli import main; main()", "paper", "--help"],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    ).stdout  # fmt: skip
    lines = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert all(len(ln) <= 80 for ln in lines)
    row = next(i for i, ln in enumerate(lines) if "compare" in ln)
    text = " ".join(ln.strip("│ ") for ln in lines[row : row + 2])
    assert "logged decisions (exit 1 on a difference)" in text
    # no ragged line from a source line break: a continuation line is never mostly empty
    # when the next line continues the same summary
    for a, b in itertools.pairwise(lines):
        if b.startswith("│          ") and b.strip("│ ").strip():
            assert len(a.rstrip("│ ").rstrip()) > 50, (a, b)
