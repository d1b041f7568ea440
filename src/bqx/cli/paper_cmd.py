"""``bqx paper``: paper trading through the live decision path (see :mod:`bqx.paper`).

A session runs in the foreground of the process that starts or resumes it (run it under
systemd, tmux or ``nohup`` for long sessions); every other command reads or steers it
through the state database, from any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bqx.cli._common import (
    JsonOpt,
    console,
    err_console,
    handle_errors,
    parse_time,
    print_json,
    progress_bar,
    settings,
    table,
    time_option,
)

app = typer.Typer(help="Paper trading: live decision path, backtest-identical fills.")

NameOpt = typer.Option(..., "--name", "-n", help="The session's name.")


def _session(name: str) -> Any:
    from bqx.paper import PaperSession

    return PaperSession(settings(), name)


def _run(sess: Any, as_json: bool, max_bars: int | None) -> None:
    try:
        with progress_bar(f"paper {sess.name}", enabled=not as_json) as update:
            out = sess.run(max_bars=max_bars, progress=update)
    finally:
        sess.close()
    if as_json:
        print_json(out)
        return
    rate = out["bars_per_s"]
    console.print(
        f"paper session [bold]{out['name']}[/bold]: {out['status']}, {out['bars']} bars"
        + (f" ({rate:.1f} bars/s)" if rate else "")
        + f", {out['decisions_written']} decisions logged"
    )
    console.print(f"see `bqx paper status --name {out['name']}`")


@app.command("start")
@handle_errors
def start(
    name: str = NameOpt,
    pairs: str = typer.Option(..., "--pairs", "-p", help="Comma-separated pairs, or 'all'."),
    feed: str = typer.Option(
        "replay", "--feed", help="replay (stored bars) or push (follow new bars as they arrive)."
    ),
    start_: str = typer.Option(..., "--start", help="First bar (UTC).", callback=time_option),
    end: str | None = typer.Option(
        None, "--end", help="Last bar (UTC); required for replay.", callback=time_option
    ),
    speed: float = typer.Option(
        0.0, "--speed", help="Replay speed, x real time (0 = as fast as possible).", min=0
    ),
    max_bars: int | None = typer.Option(
        None, "--max-bars", help="Stop after this many bars (resume later).", min=1
    ),
    risk: bool = typer.Option(
        True,
        "--risk/--no-risk",
        help="Size orders by the risk manager's allowed quantity ([risk] limits, frozen at "
        "creation); --no-risk trades the backtest sizing alone.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Create a session and run it in this process."""
    from bqx.paper import PaperSession, create_session

    s = settings()
    create_session(
        s, name, pairs, feed=feed, start=parse_time(start_), end=parse_time(end), speed=speed,
        risk=risk,
    )  # fmt: skip
    _run(PaperSession(s, name), as_json, max_bars)


@app.command("resume")
@handle_errors
def resume(
    name: str = NameOpt,
    max_bars: int | None = typer.Option(None, "--max-bars", min=1),
    as_json: bool = JsonOpt,
) -> None:
    """Continue a session after its last written bar (after a stop, crash or kill -9)."""
    _run(_session(name), as_json, max_bars)


@app.command("stop")
@handle_errors
def stop(name: str = NameOpt, as_json: bool = JsonOpt) -> None:
    """Ask the running session to stop after its current bar (it settles first)."""
    sess = _session(name)
    try:
        row = sess.state.get_paper_session(name)
        if row["status"] in ("running",):
            sess.state.update_paper_session(name, status="stopping")
            new = "stopping"
        else:
            new = row["status"]
    finally:
        sess.close()
    if as_json:
        print_json({"name": name, "status": new})
    else:
        console.print(f"paper session {name}: {new}")


@app.command("status")
@handle_errors
def status(name: str = NameOpt, as_json: bool = JsonOpt) -> None:
    """Account, cursor and open positions of a session."""
    sess = _session(name)
    try:
        st = sess.status()
    finally:
        sess.close()
    if as_json:
        print_json(st)
        return
    ret = st["return"]
    console.print(
        f"[bold]{st['name']}[/bold] {st['status']} ({st['feed']}, {', '.join(st['pairs'])})\n"
        f"cursor {_ts(st['cursor'])}  settled {_ts(st['settled'])}\n"
        f"equity {st['equity']:,.2f} ({ret:+.3%})  realised {st['realized_pnl']:+,.2f}  "
        f"closed trades {st['trades_closed']}"
        if st["equity"] is not None and ret is not None
        else f"[bold]{st['name']}[/bold] {st['status']}"
    )
    table(
        [
            {
                "pair": p["pair"],
                "side": p["side"],
                "entry": _ts(p["entry_ts"]),
                "price": p["entry_price"],
                "size": p["size"],
            }
            for p in st["open_positions"]
        ],
        title="open positions",
    )


@app.command("list")
@handle_errors
def list_(as_json: bool = JsonOpt) -> None:
    """All sessions."""
    from bqx.state import open_state

    rows = open_state(settings()).list_paper_sessions()
    out = [
        {
            "name": r["name"],
            "status": r["status"],
            "feed": r["feed"],
            "pairs": r["pairs"],
            "cursor": r["cursor_ts"],
            "equity": r["equity"],
        }
        for r in rows
    ]
    if as_json:
        print_json(out)
        return
    table(
        [{**r, "cursor": _ts(r["cursor"]), "pairs": _short(r["pairs"])} for r in out],
        title="paper sessions",
    )


@app.command("compare")
@handle_errors
def compare(
    name: str = NameOpt,
    parity_only: bool = typer.Option(
        False, "--parity-only", help="skip the backtest of the same versions on batch features"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """The paper account against a backtest of its logged decisions (exit 1 on a difference).

    Same bars, same cost model: trades matched and the first difference, if any. Then, for
    reference, a backtest of the same model versions on batch-built features over the same
    period (not expected to be identical: it says what the live path changes)."""
    from bqx.paper import compare_session, compare_version_backtest

    sess = _session(name)
    try:
        out = compare_session(sess)
        if not parity_only:
            out["version_backtest"] = compare_version_backtest(sess)
    finally:
        sess.close()
    if as_json:
        print_json(out)
    else:
        console.print(
            f"paper {out['paper_trades']} trades, backtest {out['backtest_trades']}; "
            f"matched {out['trades_matched']}; max |P&L diff| {out['max_abs_pnl_diff']:.3g}; "
            f"equity {out['equity_paper']:,.2f} vs {out['equity_backtest']:,.2f}"
        )
        if out["first_difference"]:
            err_console.print(f"[red]first difference:[/red] {out['first_difference']}")
        else:
            console.print("[green]identical[/green]")
        console.print(f"[dim]{out['note']}[/dim]")
        vb = out.get("version_backtest")
        if vb and "skipped" not in vb:
            console.print(
                f"same versions on batch features: {vb['version_backtest_trades']} trades "
                f"({vb['trades_in_both']} also in paper); signals agree on "
                f"{vb['signal_agreement']:.1%} of {vb['bars_compared']} bars; equity "
                f"{vb['equity_version_backtest']:,.2f} (paper - batch {vb['equity_diff']:+,.2f})"
            )
            console.print(f"[dim]{vb['note']}[/dim]")
        elif vb:
            console.print(f"[dim]same versions on batch features: {vb['skipped']}[/dim]")
    if not out["identical"]:
        raise typer.Exit(1)


@app.command("export")
@handle_errors
def export(
    name: str = NameOpt,
    out: Path = typer.Option(..., "--out", "-o", help="signals file (.parquet or .csv)"),
    as_json: bool = JsonOpt,
) -> None:
    """Write the session's logged signals in the format `bqx backtest --signals` reads."""
    from bqx.paper import session_signals

    sess = _session(name)
    try:
        row = sess.state.get_paper_session(name)
        upto = row["cursor_ts"] or sess.start
        sig = session_signals(sess.state, name, sess.pairs, sess.start, upto)
    finally:
        sess.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        sig.to_csv(out, index=False)
    else:
        sig.to_parquet(out, index=False)
    if as_json:
        print_json({"name": name, "rows": len(sig), "out": str(out)})
    else:
        console.print(f"wrote {len(sig)} signals to {out}")


@app.command("report")
@handle_errors
def report(
    name: str = NameOpt,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder."),
    as_json: bool = JsonOpt,
) -> None:
    """The backtest's HTML report (equity, drawdown, trades, ...) on the paper account."""
    from bqx.backtest import write_report
    from bqx.errors import NoDataError

    sess = _session(name)
    try:
        row = sess.state.get_paper_session(name)
        res = sess.backtest(row["settled_ts"])
    finally:
        sess.close()
    if res is None:
        raise NoDataError(f"paper session {name!r} has no decisions yet")
    folder = out or (sess.settings.home / "paper" / name)
    paths = write_report(res, folder, title=f"Paper account {name}")
    if as_json:
        print_json(paths.as_dict())
    else:
        console.print(f"report: {paths.report_html}")


@app.command("delete")
@handle_errors
def delete(name: str = NameOpt, as_json: bool = JsonOpt) -> None:
    """Remove a session's account (its decisions stay in the decision log)."""
    sess = _session(name)
    try:
        row = sess.state.get_paper_session(name)
        if row["status"] in ("running", "stopping"):
            from bqx.paper import PaperError

            raise PaperError(
                f"paper session {name!r} is {row['status']}",
                hint=f"stop it first: bqx paper stop --name {name}",
            )
        sess.state.delete_paper_session(name)
    finally:
        sess.close()
    if as_json:
        print_json({"name": name, "deleted": True})
    else:
        console.print(f"deleted paper session {name}")


def _ts(v: Any) -> str:
    import pandas as pd

    return "-" if v is None else pd.Timestamp(v).strftime("%Y-%m-%d %H:%M")


def _short(pairs: str) -> str:
    p = pairs.split(",")
    return pairs if len(p) <= 3 else f"{','.join(p[:3])} +{len(p) - 3}"
