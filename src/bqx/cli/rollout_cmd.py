"""``bqx rollout status|start|pause|resume|abort|promote``."""

from __future__ import annotations

from typing import Any

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings

app = typer.Typer(help="Roll a version out safely: shadow -> canary steps -> production.")


def _mgr() -> Any:
    from bqx.rollout.machine import RolloutManager

    return RolloutManager(settings())


def _show(r: dict[str, Any]) -> None:
    console.print(
        f"rollout {r['id']} {r['pair']} ({r['kind']}) {r['state']}"
        f"{' (paused)' if r.get('paused') else ''}: candidate v{r['candidate_version']} "
        f"at {r['weight']:.0%} vs v{r['baseline_version']}; steps "
        + ",".join(f"{s:.0%}" for s in r["steps"]),
        markup=False,
    )
    for e in r.get("events", []):
        w = "" if e["weight"] is None else f" {e['weight']:.0%}"
        console.print(f"  {e['at'][:19]} {e['action']:<8} -> {e['to']}{w}: {e['reason']}",
                      markup=False)  # fmt: skip


@app.command("status")
@handle_errors
def status(
    pair: str | None = typer.Argument(
        None, help="A pair (its latest rollout); all active if omitted."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """State, health, paired quality and transition history."""
    rows = _mgr().status(pair)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no active rollouts" if pair is None else f"no rollout for {pair}")
    for r in rows:
        _show(r)


@app.command("start")
@handle_errors
def start(
    pair: str = typer.Argument(...),
    version: str = typer.Argument(..., help="The approved candidate version."),
    bluegreen: bool = typer.Option(False, "--bluegreen", help="One 100 % step (blue/green)."),
    steps: str | None = typer.Option(None, "--steps", help="e.g. 0.1,0.5 (rollout.steps)."),
    skip_shadow: bool = typer.Option(False, "--skip-shadow", help="Start at the first step."),
    reason: str | None = typer.Option(None, "--reason"),
    as_json: bool = JsonOpt,
) -> None:
    """Start a rollout (shadow first); the operator advances it."""
    st = [float(x) for x in steps.split(",")] if steps else None
    r = _mgr().start(pair, version, kind="bluegreen" if bluegreen else "canary", steps=st,
                     reason=reason, skip_shadow=skip_shadow)  # fmt: skip
    print_json(r) if as_json else _show(r)


def _simple(action: str) -> Any:
    @handle_errors
    def cmd(
        pair: str = typer.Argument(...),
        reason: str | None = typer.Option(None, "--reason"),
        as_json: bool = JsonOpt,
    ) -> None:
        r = getattr(_mgr(), action)(pair, reason=reason)
        print_json(r) if as_json else _show(r)

    cmd.__doc__ = {
        "pause": "Hold the current step (no automatic advance; the guard still rolls back).",
        "resume": "Resume a paused rollout (the dwell clock restarts).",
        "abort": "Stop the rollout: the candidate gets no traffic; production unchanged.",
        "promote": "Make the candidate production now (manual override).",
    }[action]
    return cmd


for _a in ("pause", "resume", "abort", "promote"):
    app.command(_a)(_simple(_a))
