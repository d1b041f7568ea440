"""``bqx serve``, ``bqx predict`` and ``bqx predict-batch``.

``bqx predict`` goes through the same :class:`~bqx.serving.service.PredictionService` as the
API (reading bars from the store instead of the server's memory), so for the same bar it
prints exactly what ``POST /v1/predict`` answers.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import typer

from bqx.cli._common import (
    JsonOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    progress_bar,
    settings,
    table,
    time_option,
)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("predict")(predict_cmd)
    app.command("predict-batch")(predict_batch_cmd)


@handle_errors
def serve_cmd(
    host: str | None = typer.Option(None, help="Bind address (default: serve.host)."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port (default: serve.port)."),
    workers: int | None = typer.Option(
        None, min=1, help="Worker processes (default: serve.workers)."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request (costs throughput)."
    ),
    loop: str = typer.Option(
        "auto", help="Event loop: auto (uvloop if installed), asyncio, uvloop."
    ),
    http: str = typer.Option(
        "auto", help="HTTP parser: auto (httptools if installed), h11, httptools."
    ),
    nodelay: bool = typer.Option(
        True,
        "--nodelay/--no-nodelay",
        help="Set TCP_NODELAY on the shared socket of --workers > 1 (without it every "
        "kept-alive request waits ~40 ms for delayed ACKs).",
    ),
) -> None:
    """Run the prediction API (FastAPI + uvicorn, uvloop/httptools when installed)."""
    import uvicorn

    s = settings()
    s.ensure_home()
    from bqx.cluster.checks import check_tracking, warn_local_state

    warn_local_state(s, err_console.print)  # cluster mode: nothing silently on local disk
    check_tracking(s)  # an MLflow server that is down: a clear error now, not a 503 later
    h = host or s.serve.host
    p = port or s.serve.port
    w = workers or s.serve.workers
    if w > 1:
        from bqx.serving.metrics import ENV_MULTIPROC, prepare_multiprocess_dir

        d = prepare_multiprocess_dir(s.home / "prometheus")
        os.environ[ENV_MULTIPROC] = str(d.resolve())
    # the workers build their settings from the environment: pin the home we resolved
    os.environ["BQX_HOME"] = str(s.home.resolve())
    config = uvicorn.Config(
        "bqx.serving.app:create_app",
        factory=True,
        host=h,
        port=p,
        workers=w,
        log_level=log_level,
        access_log=access_log,
        loop=loop,
        http=http,
        timeout_keep_alive=30,
    )
    err_console.print(
        f"serving on http://{h}:{p} ({w} worker{'s' if w > 1 else ''}); "
        f"OpenAPI at http://{h}:{p}/docs"
    )
    if w > 1:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        if nodelay and sock.family in (socket.AF_INET, socket.AF_INET6):
            # accepted connections inherit it on Linux (uvicorn 0.54 does not set it)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run()


@handle_errors
def predict_cmd(
    pair: str = typer.Argument(..., help="e.g. EURUSD"),
    timestamp: str | None = typer.Option(
        None,
        "--timestamp",
        "-t",
        help="Predict at the last bar closed by this UTC time (bars are stamped with their open).",
    ),
    no_log: bool = typer.Option(False, "--no-log", help="Do not append to the decision log."),
    as_json: bool = JsonOpt,
) -> None:
    """One prediction through the library (no server): same numbers as POST /v1/predict."""
    from bqx.serving.service import PredictionService

    svc = PredictionService(settings(), live=False)
    try:
        pred = svc.predict(pair, timestamp, log=not no_log, source="cli")
    finally:
        svc.close()
    d = pred.as_dict()
    if as_json:
        print_json(d)
        return
    lo, hi = d["confidence_interval"]
    console.print(
        f"[bold]{d['pair']}[/bold] @ {d['timestamp']}  [bold]{d['signal']}[/bold] "
        f"(strength {d['signal_strength']:.2f}, {d['signal_reason']})"
    )
    table(
        [
            {
                "prediction": d["prediction"],
                "lo": lo,
                "hi": hi,
                "level": d["confidence_level"],
                "horizon_min": d["horizon_minutes"],
                "model": f"{d['model']} v{d['model_version']}",
                "features": d["features_used"],
                "decision_id": d["decision_id"],
            }
        ]
    )


@handle_errors
def predict_batch_cmd(
    pairs: str = typer.Option("all", help="Comma-separated pairs, or 'all'."),
    start: str = typer.Option(..., help="First bar (UTC).", callback=time_option),
    end: str = typer.Option(..., help="Last bar (UTC).", callback=time_option),
    out: str = typer.Option(..., help="Output file: .parquet or .csv."),
    jobs: int = typer.Option(1, min=1, help="Groups of pairs predicted in parallel."),
    backend: str = typer.Option(
        "local", help="local (process pool) or ray (train.ray_address for a cluster)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Production-model predictions, intervals and signals for every bar in a range (batch
    feature path; pairs without a production model are skipped and reported)."""
    from bqx.serving.batch import predict_batch, write_output

    s = settings()
    if jobs > 1 or backend != "local":
        from bqx.cluster.batch import predict_batch_distributed

        res = predict_batch_distributed(pairs, start, end, s, backend=backend, jobs=jobs)
    else:
        with progress_bar("predicting", enabled=not as_json) as update:
            res = predict_batch(pairs, start, end, s, progress=update)
    path = write_output(res.frame, out)
    summary: dict[str, Any] = {"out": str(path), **res.summary()}
    if as_json:
        print_json(summary)
        return
    for p, why in res.skipped.items():
        err_console.print(f"[yellow]{p}: skipped ({why})[/yellow]")
    console.print(
        f"wrote {summary['rows']:,} rows for {len(summary['pairs'])} pairs to {path} "
        f"in {res.seconds['total']:.1f}s ({summary['rows_per_s']:,.0f} rows/s)"
    )
