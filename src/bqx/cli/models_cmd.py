"""``bqx models``: list, inspect, approve/reject, promote, roll back, history."""

from __future__ import annotations

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings, table

app = typer.Typer(
    help="Model registry: versions, approval, production alias, history.", no_args_is_help=True
)

ReasonOpt = typer.Option(None, "--reason", help="Why (recorded in the history).")


def _reg():
    from bqx.registry import Registry

    return Registry(settings())


_LIST_COLS = [
    "pair",
    "version",
    "model",
    "approval_status",
    "aliases",
    "test_r2",
    "naive_r2",
    "test_da",
    "coverage",
    "created",
]


@app.command("list")
@handle_errors
def list_cmd(
    pair: str | None = typer.Option(None, help="Only this pair."), as_json: bool = JsonOpt
) -> None:
    """All registered versions with approval status and test metrics."""
    infos = _reg().versions(pair)
    rows = [i.as_dict() for i in infos]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["aliases"] = ",".join(r["aliases"])
    table(rows, title="registered models", columns=_LIST_COLS)


@app.command("show")
@handle_errors
def show_cmd(
    pair: str,
    version: str | None = typer.Option(None, help="Version (default: production)."),
    as_json: bool = JsonOpt,
) -> None:
    """Metadata of one version: metrics, baselines, selected features, data window, interval."""
    reg = _reg()
    info = reg.get(pair, version)
    art = reg.load(pair, version=info.version)
    d = {"version": info.as_dict(), "meta": art.meta()}
    if as_json:
        print_json(d)
        return
    m = art.metrics
    console.print(
        f"[bold]{info.pair} v{info.version}[/bold] {info.model} {info.approval_status} aliases={info.aliases}"
    )
    console.print(f"data window: {art.data_window}")
    console.print(f"interval: {art.conformal.as_dict()}")
    rows = [{"segment": k, **m[k]} for k in ("train", "val", "test")]
    rows += [{"segment": f"naive {b} (test)", **v} for b, v in m["baselines_test"].items()]
    table(rows, title="metrics", columns=["segment", "n", "r2", "mae", "rmse", "da"])
    from bqx.training.report import uncertainty_rows

    if urows := uncertainty_rows(m):
        table(urows, title="test, overlap-aware (HAC)", columns=list(urows[0]))
    console.print(f"shrinkage: {art.shrinkage.as_dict()}")
    console.print(
        f"{len(art.features)} selected features: {', '.join(art.features[:20])}{' ...' if len(art.features) > 20 else ''}"
    )


@app.command("approve")
@handle_errors
def approve_cmd(
    pair: str, version: str, reason: str | None = ReasonOpt, as_json: bool = JsonOpt
) -> None:
    """Mark a version Approved (it may then be promoted)."""
    info = _reg().approve(pair, version, reason=reason)
    print_json(info.as_dict()) if as_json else console.print(
        f"{info.pair} v{info.version}: {info.approval_status}"
    )


@app.command("reject")
@handle_errors
def reject_cmd(
    pair: str, version: str, reason: str | None = ReasonOpt, as_json: bool = JsonOpt
) -> None:
    """Mark a version Rejected (it can never be promoted)."""
    info = _reg().reject(pair, version, reason=reason)
    print_json(info.as_dict()) if as_json else console.print(
        f"{info.pair} v{info.version}: {info.approval_status}"
    )


@app.command("promote")
@handle_errors
def promote_cmd(
    pair: str, version: str, reason: str | None = ReasonOpt, as_json: bool = JsonOpt
) -> None:
    """Point the production alias at an approved version."""
    info = _reg().promote(pair, version, reason=reason)
    print_json(info.as_dict()) if as_json else console.print(
        f"{info.pair}: production -> v{info.version}"
    )


@app.command("rollback")
@handle_errors
def rollback_cmd(pair: str, reason: str | None = ReasonOpt, as_json: bool = JsonOpt) -> None:
    """Return production to the version that served before the current one."""
    info = _reg().rollback(pair, reason=reason)
    print_json(info.as_dict()) if as_json else console.print(
        f"{info.pair}: production rolled back to v{info.version}"
    )


@app.command("history")
@handle_errors
def history_cmd(pair: str, as_json: bool = JsonOpt) -> None:
    """Approvals, promotions and rollbacks of a pair: who, when, why."""
    h = _reg().history(pair)
    if as_json:
        print_json(h)
        return
    table(h.to_dict("records"), title=f"history of {pair.upper()}")
