"""``bqx ops run|status`` (the operator) and ``bqx retrain --pairs`` (on-demand trigger)."""

from __future__ import annotations

import typer

from bqx.cli._common import JsonOpt, console, err_console, handle_errors, print_json, settings

app = typer.Typer(help="The operator: schedule, retraining triggers, rollout steps.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="ops")
    root.command("retrain")(retrain_cmd)


@app.command("run")
@handle_errors
def run(
    tick: float | None = typer.Option(None, "--tick", help="Seconds between ticks (ops.tick_s)."),
    lease_ttl: float | None = typer.Option(
        None, "--lease-ttl", help="Lease TTL in seconds (ops.lease_ttl_s)."
    ),
    once: bool = typer.Option(False, "--once", help="One leader tick, then exit."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the operator until SIGTERM/SIGINT; standbys wait for the lease."""
    import logging
    import signal
    import threading

    from bqx.ops.operator import Operator

    s = settings()
    if tick is not None:
        s.ops.tick_s = tick
    if lease_ttl is not None:
        s.ops.lease_ttl_s = lease_ttl
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    op = Operator(s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    err_console.print(f"operator {op.holder}: lease TTL {s.ops.lease_ttl_s:g} s")
    op.run(stop, max_ticks=1 if once else None)
    if as_json:
        print_json({"holder": op.holder, "last_tick": op.last_tick})


@app.command("status")
@handle_errors
def status(as_json: bool = JsonOpt) -> None:
    """Lease holder, task clocks, recent triggers and active rollouts."""
    from bqx.ops.operator import Operator

    st = Operator(settings()).status()
    if as_json:
        print_json(st)
        return
    le = st["lease"]
    if le is None:
        console.print("lease: never taken (no operator has run)")
    else:
        live = "live" if le["live"] else "EXPIRED"
        console.print(f"lease: {le['holder']} token {le['token']} ({live}, "
                      f"expires {le['expires_at']:%H:%M:%S})")  # fmt: skip
    for t in st["tasks"]:
        console.print(f"task {t['name']}: last run {t['last_run_at']:%Y-%m-%d %H:%M:%S}")
    for t in st["triggers"]:
        console.print(f"trigger {t['id']} {t['pair']} {t['kind']:<8} {t['status']:<11} "
                      f"v{t['version'] or '-'} (parent v{t['parent_version'] or '-'})")  # fmt: skip
    for r in st["rollouts"]:
        console.print(f"rollout {r['id']} {r['pair']} {r['state']} {r['weight']:.0%} "
                      f"v{r['candidate_version']} vs v{r['baseline_version']}")  # fmt: skip


@handle_errors
def retrain_cmd(
    pairs: str = typer.Option(..., "--pairs", help="Comma-separated pairs."),
    reason: str | None = typer.Option(None, "--reason", help="Recorded with the trigger."),
    now: bool = typer.Option(
        False,
        "--now",
        help="Retrain here and now (gate and rollout included) instead of "
        "leaving the trigger to the running operator.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Record on-demand retrain triggers (the operator runs them on its next tick)."""
    from bqx.ops.operator import Operator, request_retrain
    from bqx.ops.triggers import follow_up, retrain

    s = settings()
    op = Operator(s, holder=f"cli:{__import__('os').getpid()}")
    out = request_retrain(op.state, [p for p in pairs.split(",") if p.strip()],
                          reason=reason, registry=op.registry)  # fmt: skip
    if now:
        for t in out:
            if op.state.claim_trigger(t["trigger_id"], op.holder):
                t.update(retrain(op, t["trigger_id"], op.holder))
                tr = op.state.get_trigger(t["trigger_id"])
                if tr is not None and tr["status"] == "done":
                    t["follow_up"] = follow_up(op, tr)
    if as_json:
        print_json(out)
        return
    for t in out:
        console.print(f"trigger {t['trigger_id']} {t['pair']}: {t['status']}"
                      + (f" v{t['version']}" if t.get("version") else ""))  # fmt: skip
