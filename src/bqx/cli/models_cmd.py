"""``bqx models``: list, inspect, approve/reject, promote, roll back, history."""

from __future__ import annotations

from typing import Any

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings, table

app = typer.Typer(
    help="Model registry: versions, approval, production alias, history.", no_args_is_help=True
)

ReasonOpt = typer.Option(None, "--reason", help="Why (recorded in the history).")


def _reg():
    from bqx.registry import Registry

    return Registry(settings())


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
    table([_list_row(r) for r in rows], title="registered models")


_STATUS = {"PendingManualApproval": "pending", "Approved": "approved", "Rejected": "rejected"}


def _list_row(r: dict[str, Any]) -> dict[str, Any]:
    """A row of ``models list`` that fits 80 columns: short status and time, 3 significant
    digits (``--json`` has the full values, ``models show`` the coverage)."""

    def g(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else ""

    return {
        "pair": r["pair"],
        "v": r["version"],
        "model": r["model"],
        "status": _STATUS.get(str(r["approval_status"]), r["approval_status"]),
        "aliases": ", ".join(r["aliases"]),
        "test_r2": g(r["test_r2"]),
        "naive_r2": g(r["naive_r2"]),
        "test_DA": g(r["test_da"]),
        "created": str(r["created"])[:16].replace("T", " "),
    }


@app.command("show")
@handle_errors
def show_cmd(
    pair: str,
    version: str | None = typer.Option(None, help="Version (default: production)."),
    as_json: bool = JsonOpt,
) -> None:
    """Metadata of one version: metrics, baselines, selected features, data window, interval."""
    from bqx.registry.sqlread import local_meta

    reg = _reg()
    info = reg.get(pair, version)
    meta = local_meta(info.source)  # meta.json on disk: no MLflow/joblib import
    if meta is None:
        meta = reg.load(pair, version=info.version).meta()
    d = {"version": info.as_dict(), "meta": meta}
    if as_json:
        print_json(d)
        return
    m = meta["metrics"]
    console.print(
        f"[bold]{info.pair} v{info.version}[/bold] {info.model} {info.approval_status} aliases={info.aliases}"
    )
    console.print(f"data window: {meta['data_window']}")
    console.print(f"interval: {meta['conformal']}")
    rows = [{"segment": k, **m[k]} for k in ("train", "val", "test")]
    rows += [{"segment": f"naive {b} (test)", **v} for b, v in m["baselines_test"].items()]
    table(rows, title="metrics", columns=["segment", "n", "r2", "mae", "rmse", "da"])
    from bqx.training.report import uncertainty_rows

    if urows := uncertainty_rows(m):
        table(urows, title="test, overlap-aware (HAC)", columns=list(urows[0]))
    console.print(f"shrinkage: {meta.get('shrinkage') or 'none (trained before it existed)'}")
    feats = meta["features"]
    console.print(
        f"{len(feats)} selected features: {', '.join(feats[:20])}{' ...' if len(feats) > 20 else ''}"
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
    rows = _reg().history_records(pair)  # no pandas import (issue 15)
    if as_json:
        print_json([{**r, "at": _iso_ms(r["at"])} for r in rows])
        return
    table(rows, title=f"history of {pair.upper()}")


def _iso_ms(t: Any) -> Any:
    """A UTC time as pandas' ``to_json(date_format="iso")`` wrote it before this command
    stopped importing pandas (``2026-01-02T03:04:05.678Z``: milliseconds, truncated)."""
    if t is None:
        return None
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
