"""``bqx experiments create|status|stop``: A/B tests of two versions on live traffic."""

from __future__ import annotations

from typing import Any

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings

app = typer.Typer(help="A/B experiments: hash-sticky split, Bayesian analysis, promotion.")


def _mgr() -> Any:
    from bqx.rollout.experiments import ExperimentManager
    from bqx.rollout.machine import RolloutManager

    return ExperimentManager(RolloutManager(settings()))


def _show(e: dict[str, Any]) -> None:
    console.print(
        f"experiment {e['id']} {e['pair']}: A v{e['a_version']} vs B v{e['b_version']} "
        f"(B share {e['split']:.0%}), {e['state']}"
        + (f", winner {e['winner'].upper()}" if e.get("winner") else ""),
        markup=False,
    )
    an = e.get("analysis") or {}
    if an.get("p_b_better") is not None:
        console.print(
            f"  bars A {an['n_a']} (ESS {an['ess_a']:.0f}), B {an['n_b']} (ESS {an['ess_b']:.0f});"
            f" accuracy A {an['accuracy_a']:.3f} B {an['accuracy_b']:.3f}",
            markup=False,
        )
        console.print(
            f"  P(B>A) {an['p_b_better']:.3f}; B-A 95% CrI [{an['diff_lo']:+.3f}, "
            f"{an['diff_hi']:+.3f}]; loss(B) {an['loss_choose_b']:.4f}",
            markup=False,
        )
    if e.get("reason"):
        console.print(f"  {e['reason']}", markup=False)


@app.command("create")
@handle_errors
def create(
    pair: str = typer.Option(..., "--pair"),
    a: str = typer.Option(..., "--a", help="Version of arm A."),
    b: str = typer.Option(..., "--b", help="Version of arm B."),
    split: float = typer.Option(0.5, "--split", help="Share of clients on B."),
    min_samples: int = typer.Option(500, "--min-samples", help="Matured bars per arm."),
    min_days: float = typer.Option(7.0, "--min-days", help="Minimum duration in days."),
    as_json: bool = JsonOpt,
) -> None:
    """Start an experiment (both versions approved, same feature set)."""
    e = _mgr().create(pair, a, b, split=split, min_samples=min_samples, min_days=min_days)
    print_json(e) if as_json else _show(e)


@app.command("status")
@handle_errors
def status(
    experiment_id: int | None = typer.Argument(None, help="Experiment id (default: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """The analysis so far (posteriors, credible intervals, squared-error difference)."""
    m = _mgr()
    ids = [experiment_id] if experiment_id is not None else [
        x["id"] for x in m.r.state.experiments()
    ]  # fmt: skip
    rows = [m.status(i) for i in ids]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no experiments")
    for e in rows:
        _show(e)


@app.command("stop")
@handle_errors
def stop(
    experiment_id: int = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason"),
    as_json: bool = JsonOpt,
) -> None:
    """Stop an experiment; production unchanged."""
    e = _mgr().stop(experiment_id, reason=reason)
    print_json(e) if as_json else _show(e)
