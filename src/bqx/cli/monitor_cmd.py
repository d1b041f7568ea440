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


@app.command("run")
@handle_errors
def run_cmd(as_json: bool = JsonOpt) -> None:
    """One pass: mature decisions, drift, quality, alerts, purge old captures."""
    from bqx.monitoring import run_pass

    rep = run_pass(settings())
    if as_json:
        print_json(rep)
        return
    table([{k: v for k, v in rep["mature"].items() if k != "per_pair"}], title="maturation")
    _pairs_table(rep["pairs"])
    console.print(
        f"alerts raised: {len(rep['alerts']['raised'])}, resolved: "
        f"{len(rep['alerts']['resolved'])}; captures purged: {rep['purged_captures']}"
    )


@app.command("status")
@handle_errors
def status_cmd(
    pair: str | None = typer.Option(None, "--pair", help="Only this pair."),
    as_json: bool = JsonOpt,
) -> None:
    """Drift and live quality per pair and model version (read-only)."""
    from bqx.monitoring import monitor_reports
    from bqx.registry import Registry
    from bqx.state import open_state

    s = settings()
    rep = monitor_reports(open_state(s), Registry(s), pairs=[pair.upper()] if pair else None)
    if as_json:
        print_json(rep)
        return
    _pairs_table(rep)


def _pairs_table(reports: dict) -> None:
    rows = []
    for pair, r in reports.items():
        vers = set(r["drift"].get("versions", {})) | set(r["quality"].get("versions", {}))
        for v in sorted(vers):
            d = r["drift"].get("versions", {}).get(v) or {}
            q = (r["quality"].get("versions", {}).get(v) or {}).get("1D") or {}
            r2 = (q.get("metrics") or {}).get("r2") or {}
            w = d.get("worst") or {}
            rows.append(
                {
                    "pair": pair,
                    "ver": v,
                    "n_1d": q.get("n"),
                    "r2_1d": r2.get("value"),
                    "r2_se": r2.get("se"),
                    "worst_kl": w.get("kl"),
                    "drift_crit": d.get("critical"),
                    "alert": "yes" if q.get("alert") else "",
                }
            )
    table(rows, title="monitoring")
