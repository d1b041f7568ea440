"""``bqx data``: generate, ingest, validate and inspect market data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from bqx.cli._common import (
    JsonOpt,
    console,
    handle_errors,
    print_json,
    progress_bar,
    settings,
    table,
    time_option,
)
from bqx.infra.redact import redact

app = typer.Typer(help="Market data: simulate, ingest, validate, inspect.", no_args_is_help=True)

FORMATS = ["csv", "parquet", "histdata", "dukascopy", "oanda"]  # = bqx.data.ingest.FORMATS


@app.command("generate")
@handle_errors
def generate_cmd(
    days: float = typer.Option(
        30, min=0.01, help="Calendar days to simulate (weekends produce no bars)."
    ),
    pairs: str = typer.Option("all", help="Comma-separated pairs, or 'all'."),
    seed: int = typer.Option(42, help="Random seed: same seed, same data."),
    signal_strength: float = typer.Option(
        0.0,
        "--signal-strength",
        min=0.0,
        max=0.499,
        help="Oracle R² of the 60-bar BQX target (0 = pure random walk, < 0.5).",
    ),
    signal_span: int = typer.Option(
        240,
        "--signal-span",
        min=2,
        help="Span (bars) of the planted momentum's EMA: shorter = shorter-lived signal that "
        "the 'last known target' baseline does not capture (the demo uses 90).",
    ),
    start: str = typer.Option("2024-01-01", help="First day (UTC).", callback=time_option),
    as_json: bool = JsonOpt,
) -> None:
    """Simulate bars for the 28 pairs (SPEC section 9) and write them into the store."""
    from bqx.data.simulator import generate, kappa_for_strength
    from bqx.data.store import open_store

    try:  # a short span caps the strength it can plant: say so before simulating
        kappa_for_strength(signal_strength, signal_span)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="'--signal-span'") from None
    s = settings()
    s.ensure_home()
    t0 = time.perf_counter()
    with progress_bar("simulating", enabled=not as_json) as update:
        res = generate(
            days=days,
            pairs=pairs,
            seed=seed,
            signal_strength=signal_strength,
            start=start,
            interval=s.interval,
            progress=update,
            signal_span=signal_span,
        )
    t_gen = time.perf_counter() - t0
    store = open_store(settings=s)
    t1 = time.perf_counter()
    up = store.upsert(res.bars)
    t_write = time.perf_counter() - t1
    out: dict[str, Any] = {
        "store": redact(store.url),
        "bars": len(res.bars),
        "pairs": sorted(res.bars["pair"].unique().tolist()),
        "first": res.bars["ts"].min(),
        "last": res.bars["ts"].max(),
        "seed": seed,
        "signal_strength": signal_strength,
        "signal_span": signal_span,
        "kappa": res.kappa,
        "oracle_r2_mean": res.oracle_r2_mean if signal_strength > 0 else 0.0,
        "oracle_r2": res.oracle_r2,
        "upsert": up.as_dict(),
        "seconds": {"simulate": round(t_gen, 3), "write": round(t_write, 3)},
    }
    store.close()
    if as_json:
        print_json(out)
        return
    console.print(
        f"simulated [bold]{out['bars']:,}[/bold] bars for {len(out['pairs'])} pairs "
        f"({out['first']:%Y-%m-%d} .. {out['last']:%Y-%m-%d %H:%M}) in {t_gen:.1f}s "
        f"({out['bars'] / max(t_gen, 1e-9):,.0f} bars/s); wrote to {out['store']}: "
        f"{up.inserted:,} new, {up.updated:,} updated, {up.unchanged:,} unchanged"
    )
    if signal_strength > 0:
        console.print(
            f"oracle R² of the 60-bar BQX target: {out['oracle_r2_mean']:.4f} (mean over pairs)"
        )


def _parse_map(mapping: list[str] | None) -> dict[str, str] | None:
    if not mapping:
        return None
    out: dict[str, str] = {}
    for item in mapping:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise typer.BadParameter(f"--map expects canonical=source pairs, got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@app.command("ingest")
@handle_errors
def ingest_cmd(
    path: Path = typer.Argument(..., help="File to ingest.", exists=True, dir_okay=False),
    fmt: str = typer.Option("csv", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
    pair: str | None = typer.Option(None, help="Pair, when the file has no pair column."),
    mapping: list[str] | None = typer.Option(
        None, "--map", help="Column mapping canonical=source, e.g. --map ts=Date,close=Close."
    ),
    tz: str | None = typer.Option(
        None, help="Time zone of naive timestamps (csv/parquet; default UTC)."
    ),
    quarantine: bool = typer.Option(
        False,
        "--quarantine",
        help="Write the good rows and save the bad ones (with reasons) to a file.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Validate a file and upsert its bars. Strict by default: any bad row rejects the file."""
    from bqx.data.ingest import ingest_file
    from bqx.data.store import open_store
    from bqx.errors import DataValidationError

    s = settings()
    s.ensure_home()
    store = open_store(settings=s)
    try:
        res = ingest_file(
            store,
            path,
            fmt=fmt,
            pair=pair,
            mapping=_parse_map(mapping),
            tz=tz,
            quarantine=quarantine,
            quarantine_dir=s.quarantine_dir,
        )
    except DataValidationError as e:
        if as_json:
            import pandas as pd

            rep = e.report if isinstance(e.report, pd.DataFrame) else None
            n = len(rep) if rep is not None else 0
            head = rep.head(1000) if rep is not None else None
            print_json({"ok": False, "error": e.message, "issues_total": n, "issues": head})
        else:
            _print_issues(e.report)
        raise
    finally:
        store.close()
    d = res.as_dict()
    if as_json:
        print_json(d)
        return
    console.print(
        f"{path}: read {res.rows_read:,} rows, wrote {res.rows_valid:,} "
        f"({res.upsert.inserted:,} new, {res.upsert.updated:,} updated, "
        f"{res.upsert.unchanged:,} unchanged) in {res.seconds:.2f}s"
    )
    for note in d["notes"]:
        console.print(f"[dim]{note}[/dim]")
    if res.rows_rejected:
        console.print(
            f"[yellow]{res.rows_rejected:,} bad rows quarantined to {res.quarantine_file}[/yellow]"
        )
        _print_issues(res.issues)


def _print_issues(report: Any, limit: int = 20) -> None:
    import pandas as pd

    if report is None or not isinstance(report, pd.DataFrame) or not len(report):
        return
    counts = report["reason"].value_counts()
    table([{"reason": k, "rows": int(v)} for k, v in counts.items()], title="issues by reason")
    rows = report.head(limit).to_dict("records")
    table(rows, title=f"first {min(limit, len(report))} of {len(report)} bad rows")


@app.command("validate")
@handle_errors
def validate_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False),
    fmt: str = typer.Option("csv", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
    pair: str | None = typer.Option(None),
    mapping: list[str] | None = typer.Option(None, "--map"),
    tz: str | None = typer.Option(None),
    as_json: bool = JsonOpt,
) -> None:
    """Check a file without writing anything; exit code 1 when it has bad rows."""
    from bqx.data.ingest import validate_file

    rep = validate_file(
        path, fmt=fmt, pair=pair, mapping=_parse_map(mapping), tz=tz, interval=settings().interval
    )
    d = rep.as_dict()
    if as_json:
        print_json(d)
    else:
        status = "[green]OK[/green]" if rep.ok else "[red]INVALID[/red]"
        console.print(f"{path}: {status}: {rep.rows_read:,} rows, {len(rep.issues):,} bad")
        _print_issues(rep.issues)
    if not rep.ok:
        raise typer.Exit(1)


@app.command("info")
@handle_errors
def info_cmd(
    pair: str | None = typer.Option(None, help="Only this pair (or comma-separated pairs)."),
    as_json: bool = JsonOpt,
) -> None:
    """Per-pair summary of the store: rows, first/last bar, gaps inside trading time."""
    from bqx.data.store import open_store

    s = settings()
    store = open_store(settings=s)
    summ = store.summary(pair)
    store.close()
    if as_json:
        print_json({"store": redact(store.url), "pairs": summ})
        return
    if not len(summ):
        console.print(
            f"store {redact(store.url)} is empty: run `bqx data generate` or `bqx data ingest`"
        )
        return
    table(summ.to_dict("records"), title=f"bars in {redact(store.url)}")
    console.print(f"{len(summ)} pairs, {int(summ['rows'].sum()):,} bars")
