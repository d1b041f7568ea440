"""``bqx monitor`` (run, status, baseline) and ``bqx alerts`` (list, ack, resolve)."""

from __future__ import annotations

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
    pair: str | None = typer.Option(None, "--pair", help="One pair (default: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """The newest monitoring pass (live quality, drift), open alerts and notifier failures,
    as the service's gauges and /dashboard show them."""
    from bqx.monitoring.status import pass_status
    from bqx.state import open_state
    from bqx.universe import normalize_pair

    p = normalize_pair(pair) if pair else None
    st = pass_status(open_state(settings()), pair=p)
    if as_json:
        print_json(st)
        return
    run = st["run"]
    if run is None:
        console.print("no monitoring pass yet: run `bqx monitor run` (or `bqx ops run`)")
    else:
        console.print(
            f"pass {run['id']} ran {run['ran_at_iso']} ({run['seconds']:.2f} s), windows end "
            f"{run['as_of_iso']}; failed steps: {run['errors']}"
        )
        table(
            [
                {
                    "pair": q["pair"],
                    "ver": q["model_version"],
                    "win": q["window"],
                    "n": q["n"],
                    "R²": _fmt(q["r2"]) if q.get("r2") else "-",
                    "DA": _fmt(q["da"]) if q.get("da") else "-",
                    "verdict": q["verdict"],
                }
                for q in run["quality"]
            ],
            title="Live quality",
        )
        table(
            [
                {
                    "pair": d["pair"],
                    "ver": d["model_version"],
                    "drift": d["severity"],
                    ">warn": d["over_warning"],
                    ">crit": d["over_critical"],
                    "worst (KL)": d["worst_text"],
                }
                for d in run["drift"]
            ],
            title="Input drift",
        )
    table(
        [{k: a[k] for k in ("severity", "rule", "pair", "count", "message")} for a in st["alerts"]],
        title="Open alerts",
    )
    bad = {k: v for k, v in st["notifier_failures"].items() if v}
    console.print("notifier failures: " + (", ".join(f"{k} {v}" for k, v in bad.items()) or "none"))


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

    from bqx.monitoring.baseline import market_at, save_baseline, training_baseline
    from bqx.registry import Registry
    from bqx.training.splits import chrono_split
    from bqx.training.train import load_training_frame, prepare, training_market
    from bqx.universe import normalize_pair

    s = settings()
    reg = Registry(s)
    art = reg.load(pair, version=version)
    df = prepare(load_training_frame(pair, s))
    sp = chrono_split(len(df), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    X = df.drop(columns=["target"]).iloc[sp.train]
    y = df["target"].to_numpy(np.float64)[sp.train]
    pred = np.asarray(art.pipeline.predict(X), np.float64)
    market = training_market(normalize_pair(pair), s, X.index)
    b = training_baseline(X, list(art.features), pred, y, market=market_at(market, X.index))
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
        [{k: r[k] for k in ("id", "severity", "rule", "pair", "count", "message")} for r in rows],
        title="Alerts",
    )


@alerts_app.command("ack")
@handle_errors
def ack(
    alert: str = typer.Argument(..., help="The open alert's id or fingerprint (see list)."),
    reason: str | None = typer.Option(None, "--reason", help="A note kept with the ack."),
    as_json: bool = JsonOpt,
) -> None:
    """Acknowledge an open alert: it stays open until its condition clears, but is not
    notified again unless it escalates."""
    from bqx.errors import BqxError
    from bqx.state import current_actor, open_state

    aid = open_state(settings()).ack_alert(alert, actor=current_actor(), note=reason)
    if aid is None:
        raise BqxError(f"no open alert {alert!r}", hint="bqx alerts list shows the open ones")
    if as_json:
        print_json({"alert": alert, "id": aid, "acknowledged": True})
    else:
        console.print(f"acknowledged alert {aid}")


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
