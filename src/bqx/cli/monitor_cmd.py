"""``bqx monitor`` (run, status, baseline) and ``bqx alerts`` (list, ack, resolve)."""

from __future__ import annotations

from pathlib import Path

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings, table

app = typer.Typer(help="Monitoring: matured outcomes, live quality, drift baselines, alerts.")
alerts_app = typer.Typer(help="Alerts raised by monitoring (de-duplicated by fingerprint).")


@app.command("run")
@handle_errors
def run(
    as_of: str | None = typer.Option(
        None, "--as-of", help="End of the live windows (UTC; default now): for replayed periods."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """One pass: mature decisions, input drift, live quality per pair and version, alert
    rules, capture purge."""
    from bqx.cli._common import parse_time
    from bqx.monitoring import run_once

    rep = run_once(settings(), now=parse_time(as_of, "--as-of"))
    if as_json:
        print_json(rep)
        return
    rows = [
        {
            "pair": r["pair"],
            "ver": r["model_version"],
            "win": r["window"],
            "n": r["n"],
            "R²": _fmt(r["metrics"]["r2"]),
            "DA": _fmt(r["metrics"]["da"]),
            "n_eff": round(r["metrics"]["r2"]["n_eff"] or 0),
        }
        for r in rep["quality"]["rows"]
    ]
    table(rows, title="Live quality")
    ops = (rep.get("ops") or {}).get("latency") or {}
    if ops:
        errs = rep["ops"]["errors"]
        table(
            [
                {
                    "route": r,
                    "requests": v["requests"],
                    "5xx %": round(100 * (errs.get(r, {}).get("error_rate") or 0.0), 2),
                    "p50 ms": round(v["p50_ms"], 1),
                    "p95 ms": round(v["p95_ms"], 1),
                    "p99 ms": round(v["p99_ms"], 1),
                }
                for r, v in ops.items()
            ],
            title=f"Service, last {rep['ops']['windows_min']['latency']:g} min (all instances)",
        )
    m = rep["mature"] or {}
    a = rep["alerts"] or {}
    console.print(
        f"matured {m.get('matured', 0)}/{m.get('pending', 0)} pending; "
        f"alerts firing {len(a.get('firing', []))}, resolved {len(a.get('resolved', []))}; "
        f"{rep['seconds']:.2f} s"
    )


@app.command("status")
@handle_errors
def status(
    pair: str | None = typer.Option(None, "--pair", help="One pair."),
    as_json: bool = JsonOpt,
) -> None:
    """Per pair: production/candidate version, live quality 1d/7d (± and n_eff) and the
    worst drift as of the last monitoring pass, open alerts, notifier failures."""
    from bqx.monitoring.status import monitor_status
    from bqx.registry import Registry
    from bqx.state import open_state

    s = settings()
    uri = s.resolved_tracking_uri
    # no registry database yet: no versions (do not create one just to look)
    fresh = uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists()
    st = monitor_status(open_state(s), None if fresh else Registry(s), pair)
    if as_json:
        print_json(st)
        return
    lp = st["last_pass"]
    if lp is None:
        console.print("no monitoring pass recorded yet: run `bqx monitor run`")
    else:
        console.print(
            f"last pass {lp['started_at'][:16].replace('T', ' ')} UTC "
            f"({lp['seconds']:.1f} s, as of {lp['as_of'][:16].replace('T', ' ')}): "
            + ("ok" if lp["ok"] else f"[red]{len(lp['errors'])} error(s)[/red]")
        )
    rows = []
    for r in st["pairs"]:
        roles = [(r["production"], "prod"), (r["candidate"], "cand")]
        versions = [(v, role) for v, role in roles if v is not None]
        known = {str(v) for v, _ in versions}
        # versions with live quality but neither production nor candidate (e.g. retired)
        versions += [(v, "") for v in sorted(r["quality"], key=_vkey) if v not in known]
        for i, (v, role) in enumerate(versions or [(None, "")]):
            q = r["quality"].get(str(v), {}) if v is not None else {}
            d = r["drift"] or {}
            first = i == 0
            rows.append(
                {
                    "pair": r["pair"] if first else "",
                    "version": f"v{v} {role}".strip() if v is not None else "-",
                    "R² 1d": _r2_cell(q.get("1d")),
                    "R² 7d": _r2_cell(q.get("7d")),
                    "drift": (
                        f"{d.get('severity')} {d.get('feature') or ''} (v{d['model_version']})"
                        if first and d
                        else ""
                    ),
                    "alerts": r["open_alerts"] if first else "",
                    "nf": r["notifier_failures"] if first else "",
                    "pass": r["last_pass_at"][11:16] if first and r["last_pass_at"] else "",
                }
            )
    table(rows, title="Monitoring (nf: notifier failures)")
    if st["open_alerts_unpaired"]:
        console.print(f"{st['open_alerts_unpaired']} open alert(s) not tied to a pair")
    for name, n in st["notifiers"].items():
        if n["failures"]:
            console.print(
                f"notifier {name}: {n['failures']} failed deliveries, {n['pending']} pending"
                + (f"; last error: {n['last_error']}" if n["last_error"] else "")
            )


def _vkey(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (1 << 30, v)


def _r2_cell(w: dict | None) -> str:
    if not w or not w.get("r2"):
        return ""
    from bqx.stats import Estimate

    e = Estimate.from_dict(w["r2"])
    ne = e.n_eff
    return e.fmt() + (f" n_eff {ne:.0f}" if ne == ne else "")


def _fmt(d: dict) -> str:
    from bqx.stats import Estimate

    return Estimate.from_dict(d).fmt()


@app.command("baseline")
@handle_errors
def baseline(
    pair: str = typer.Argument(..., help="Pair, e.g. EURUSD."),
    version: str = typer.Argument(..., help="Registered version number."),
    as_json: bool = JsonOpt,
) -> None:
    """Compute and attach a baseline to a version registered without one."""
    import numpy as np

    from bqx.monitoring.baseline import save_baseline, training_baseline
    from bqx.registry import Registry
    from bqx.training.splits import chrono_split
    from bqx.training.train import load_training_frame, prepare

    s = settings()
    reg = Registry(s)
    art = reg.load(pair, version=version)
    df = prepare(load_training_frame(pair, s))
    sp = chrono_split(len(df), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    X = df.drop(columns=["target"]).iloc[sp.train]
    y = df["target"].to_numpy(np.float64)[sp.train]
    pred = np.asarray(art.pipeline.predict(X), np.float64)
    b = training_baseline(X, list(art.features), pred, y)
    save_baseline(reg, pair, version, b)
    out = {"pair": pair, "version": version, "columns": len(b["columns"]), "rows": b["rows"]}
    if as_json:
        print_json(out)
    else:
        console.print(
            f"baseline for {pair} v{version}: {out['columns']} columns, {out['rows']} rows"
        )


@alerts_app.command("list")
@handle_errors
def list_(
    open_only: bool = typer.Option(True, "--open/--all", help="Only open alerts."),
    pair: str | None = typer.Option(None, "--pair", help="One pair."),
    as_json: bool = JsonOpt,
) -> None:
    """Alerts, oldest first."""
    from bqx.state import open_state

    df = open_state(settings()).read_alerts(open_only=open_only, pair=pair)
    rows = df.to_dict(orient="records")
    if as_json:
        print_json(rows)
        return
    table(
        [
            {
                **{k: r[k] for k in ("id", "severity", "rule", "pair", "count")},
                "ack": _ack_cell(r),
                "message": r["message"],
            }
            for r in rows
        ],
        title="Alerts",
    )


def _ack_cell(r: dict) -> str:
    import pandas as pd

    at = r.get("acked_at")
    if at is None or pd.isna(at):
        return ""
    return str(r.get("acked_by") or "yes")


@alerts_app.command("ack")
@handle_errors
def ack(
    alert_id: int = typer.Argument(..., help="The alert's id (see `bqx alerts list`)."),
    by: str | None = typer.Option(None, "--by", help="Who acknowledges (default: OS user)."),
    note: str | None = typer.Option(None, "--note", help="Free text, e.g. a ticket."),
    as_json: bool = JsonOpt,
) -> None:
    """Acknowledge an open alert: no more repeat notifications; an escalation is still
    notified and the alert still resolves automatically when its condition clears."""
    from bqx.errors import BqxError
    from bqx.state import current_actor, open_state

    row = open_state(settings()).ack_alert(alert_id, by=by or current_actor(), note=note)
    if row is None:
        raise BqxError(
            f"no open alert with id {alert_id}",
            hint="`bqx alerts list` shows the open alerts and their ids",
        )
    if as_json:
        print_json(row)
    else:
        console.print(f"acknowledged alert {alert_id} ({row['rule']}) by {row['acked_by']}")


@alerts_app.command("resolve")
@handle_errors
def resolve(
    fingerprint: str = typer.Argument(..., help="The alert's fingerprint (see list)."),
    as_json: bool = JsonOpt,
) -> None:
    """Resolve an open alert by hand."""
    from bqx.state import open_state

    n = open_state(settings()).resolve_alert(fingerprint)
    if as_json:
        print_json({"fingerprint": fingerprint, "resolved": n})
    else:
        console.print(f"resolved {n} alert(s)")


def register(root: typer.Typer) -> None:
    """Add ``bqx monitor`` and ``bqx alerts`` to the root CLI."""
    root.add_typer(app, name="monitor")
    root.add_typer(alerts_app, name="alerts")
