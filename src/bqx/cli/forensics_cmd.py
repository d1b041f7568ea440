"""``bqx forensics``: explain logged decisions (SHAP) off the request path, show, purge."""

from __future__ import annotations

import contextlib

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings

app = typer.Typer(help="Per-decision explanations: the decision log is the outbox.")


@app.command("run")
@handle_errors
def run(as_json: bool = JsonOpt) -> None:
    """Explain every pending decision once and exit (for cron and tests)."""
    from bqx.decision.forensics import ForensicsWorker

    res = ForensicsWorker(settings()).run_once()
    if as_json:
        print_json(res)
    else:
        console.print(
            f"explained {res['explained']}, failed {res['failed']} in {res['seconds']:.2f} s"
        )


@app.command("worker")
@handle_errors
def worker(
    poll: float | None = typer.Option(None, "--poll", help="Seconds between empty polls."),
    nice: int = typer.Option(
        10,
        "--nice",
        help="Niceness when the idle scheduling class is off or refused (0 = unchanged).",
    ),
    idle: bool | None = typer.Option(
        None,
        "--idle/--no-idle",
        help="Run in the idle CPU class (Linux SCHED_IDLE; default: forensics.idle_priority).",
    ),
    max_cpu_share: float | None = typer.Option(
        None,
        "--max-cpu-share",
        min=0.01,
        max=1.0,
        help="Most CPU time as a share of wall time (default: forensics.max_cpu_share).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Follow the decision log continuously (Ctrl-C to stop); nothing is lost while down.
    Runs at nice 10; --idle and --max-cpu-share lower its share further (see
    docs/performance.md for what they do to the API's latency)."""
    from bqx.decision.forensics import ForensicsWorker, lower_priority

    s = settings()
    f = s.forensics
    how = lower_priority(f.idle_priority if idle is None else idle, nice)
    share = f.max_cpu_share if max_cpu_share is None else max_cpu_share
    if not as_json:
        console.print(
            f"forensics worker: following the decision log ({how}, CPU share <= {share:g}; "
            "Ctrl-C to stop)"
        )
    with contextlib.suppress(KeyboardInterrupt):
        ForensicsWorker(s).follow(poll_s=poll or f.poll_s, max_cpu_share=share)


@app.command("show")
@handle_errors
def show(decision_id: str, as_json: bool = JsonOpt) -> None:
    """The explanation of one decision (pending / unknown are said so, exit code 1)."""
    from bqx.state import open_state

    st = open_state(settings())
    row = st.read_forensics(decision_id)
    if row is None:
        status = "pending" if st.decision_exists(decision_id) else "unknown"
        if as_json:
            print_json({"decision_id": decision_id, "status": status})
        else:
            console.print(f"{decision_id}: {status}")
        raise typer.Exit(1)
    if as_json:
        print_json(row)
        return
    ex = row["explanation"] or {}
    console.print(f"{decision_id} {row['status']} {ex.get('pair')} v{ex.get('model_version')}")
    for item in (ex.get("shap") or [])[:15]:
        console.print(f"  {item['feature'][:50]:<50} {item['value']:+.3e}")
    if row.get("error"):
        console.print(f"error: {row['error']}")


@app.command("purge")
@handle_errors
def purge(
    days: float | None = typer.Option(None, "--days", help="Default: forensics.retention_days."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete explanations older than the retention."""
    from bqx.state import open_state

    s = settings()
    d = days if days is not None else s.forensics.retention_days
    n = open_state(s).purge_forensics(d)
    if as_json:
        print_json({"deleted": n, "older_than_days": d})
    else:
        console.print(f"deleted {n} explanations older than {d:g} days")
