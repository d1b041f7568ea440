"""``bqx monitor``: maturation of served decisions and training baselines."""

from __future__ import annotations

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings, table

app = typer.Typer(help="Monitoring: realised targets, baselines.", no_args_is_help=True)


@app.command("baseline")
@handle_errors
def baseline_cmd(
    pair: str,
    version: str = typer.Argument(..., help="Model version (older versions lack a baseline)."),
    show: bool = typer.Option(False, "--show", help="Only show the stored baseline."),
    as_json: bool = JsonOpt,
) -> None:
    """Compute and store the monitoring baseline of a version (training stores it already).

    Reads the version's training window from the feature store (`bqx features build`)."""
    from bqx.monitoring.baseline import build_baseline_for_version, load_baseline, summary_rows
    from bqx.registry import Registry

    s = settings()
    reg = Registry(s)
    doc = (
        load_baseline(reg, pair, version)
        if show
        else build_baseline_for_version(reg, pair, version, s)
    )
    if as_json:
        print_json(doc)
        return
    console.print(
        f"baseline of {pair} v{version}: {len(doc['columns'])} columns, {doc['bins']} bins"
    )
    table(
        summary_rows(doc, 20),
        title="baseline (first 20)",
        columns=["column", "bins", "mean", "std", "missing"],
    )


@app.command("mature")
@handle_errors
def mature_cmd(as_json: bool = JsonOpt) -> None:
    """Fill realised targets of decisions whose horizon has passed (incremental)."""
    from bqx.data.store import open_store
    from bqx.monitoring import mature
    from bqx.state import open_state

    s = settings()
    state = open_state(s)
    store = open_store(settings=s)
    try:
        rep = mature(state, store, s)
    finally:
        store.close()
    d = rep.as_dict()
    if as_json:
        print_json(d)
        return
    table([{k: v for k, v in d.items() if k != "per_pair"}], title="maturation")
