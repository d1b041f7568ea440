"""``bqx train`` and ``bqx tune``: per-pair models in parallel, Optuna tuning."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from bqx.cli._common import (
    JsonOpt,
    backend_option,
    console,
    err_console,
    handle_errors,
    model_option,
    print_json,
    progress_bar,
    settings,
    table,
    time_option,
)

MODELS = "rf|lightgbm|lgbm_rf|xgboost|ridge"


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("tune")(tune_cmd)


@handle_errors
def train_cmd(
    pairs: str = typer.Option("all", help="Comma-separated pairs, or 'all'."),
    all_pairs: bool = typer.Option(False, "--all", help="All 28 pairs (same as --pairs all)."),
    model: str | None = typer.Option(
        None,
        help=f"{MODELS} (default: settings train.model = lgbm_rf, the SPEC forest in LightGBM; rf = scikit-learn).",
        callback=model_option,
    ),
    jobs: int | None = typer.Option(None, help="Pairs trained in parallel (default: CPU count)."),
    backend: str = typer.Option(
        "local", help="local (process pool) or ray.", callback=backend_option
    ),
    params: str | None = typer.Option(
        None, help="'best' (from the pair's Optuna study) or a JSON object of estimator parameters."
    ),
    start: str | None = typer.Option(
        None, help="First bar of the training data (UTC).", callback=time_option
    ),
    end: str | None = typer.Option(
        None, help="Last bar of the training data (UTC).", callback=time_option
    ),
    build_features: bool = typer.Option(
        True,
        "--build-features/--no-build-features",
        help="Update the feature store first (incremental).",
    ),
    promote: bool = typer.Option(
        False, "--promote", help="Promote versions the approval rule approves to production."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Train one model per pair (selection on the training segment, purged 70/15/15 split),
    log to MLflow and register a new version per pair."""
    from bqx.training.parallel import train_many
    from bqx.universe import normalize_pairs

    s = settings()
    s.ensure_home()
    from bqx.cluster.checks import warn_local_state

    warn_local_state(s, err_console.print)
    plist = normalize_pairs(None if all_pairs else pairs)
    model = model or s.train.model
    per_pair: dict[str, dict[str, Any] | None] = {}
    if params == "best":
        from bqx.training.tune import best_params

        for p in plist:
            bp = best_params(p, model, s, start=start, end=end)
            if bp is None:
                err_console.print(
                    f"[yellow]{p}: no Optuna study for {model} on this data window and feature set; using defaults (run `bqx tune --pair {p} --model {model}`)[/yellow]"
                )
            per_pair[p] = bp
    elif params:
        try:
            parsed = json.loads(params)
        except json.JSONDecodeError as e:
            raise typer.BadParameter(f"--params must be 'best' or a JSON object: {e}") from None
        per_pair = {p: parsed for p in plist}
    t0 = time.perf_counter()
    if build_features:
        import os

        from bqx.data.store import open_store
        from bqx.features.store import FeatureStore

        fs = FeatureStore(
            s.features_dir, horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
        )
        store = open_store(settings=s)
        with progress_bar("features", enabled=not as_json) as update:
            fs.build(store, plist, start, end, progress=update, jobs=jobs or os.cpu_count() or 1)
        store.close()
    rows: list[dict[str, Any]] = []
    with progress_bar(
        f"training {len(plist)} pairs ({model})", total=len(plist), enabled=not as_json
    ) as update:

        def done(out: Any, n: int, total: int) -> None:
            update(n, total)
            rows.append(out.row())
            if not as_json:
                status = (
                    "[green]ok[/green]"
                    if out.ok
                    else f"[red]failed[/red]: {str(out.error).splitlines()[0]}"
                )
                err_console.print(f"{out.pair}: {status} ({out.seconds:.0f}s)")

        outcomes = train_many(
            plist, s, model=model, params=per_pair, jobs=jobs, backend=backend,
            start=start, end=end, promote=promote, on_done=done,
        )  # fmt: skip
    summary = [o.row() for o in outcomes]
    failed = [o.pair for o in outcomes if not o.ok]
    from bqx.monitoring.opsrules import training_alerts
    from bqx.state import open_state

    # a failed pair raises a critical training_failed alert; a success resolves its own
    training_alerts(lambda: open_state(s), [(o.pair, o.ok, o.error) for o in outcomes])
    if as_json:
        print_json(
            {
                "model": model,
                "seconds": round(time.perf_counter() - t0, 1),
                "pairs": summary,
                "failed": failed,
            }
        )
    else:
        cols = [
            "pair",
            "ok",
            "features",
            "test_r2",
            "naive_r2",
            "test_da",
            "coverage",
            "approved",
            "version",
            "promoted",
            "seconds",
        ]
        table(
            summary,
            title=f"{model}: {len(plist) - len(failed)}/{len(plist)} pairs trained in {time.perf_counter() - t0:.0f}s",
            columns=cols,
        )
        for o in outcomes:
            if not o.ok:
                err_console.print(f"[red]{o.pair}[/red]: {o.error}")
    if failed:
        raise typer.Exit(1)


@handle_errors
def tune_cmd(
    pair: str = typer.Option(..., help="Pair to tune."),
    trials: int = typer.Option(
        50, min=1, help="Optuna trials (the study accumulates across runs)."
    ),
    model: str = typer.Option("lightgbm", help=MODELS, callback=model_option),
    timeout: float | None = typer.Option(None, help="Stop after this many seconds."),
    start: str | None = typer.Option(None, callback=time_option),
    end: str | None = typer.Option(None, callback=time_option),
    jobs: int = typer.Option(1, min=1, help="Workers sharing the study (trials split)."),
    backend: str = typer.Option(
        "local",
        help="local (process pool) or ray (train.ray_address for a cluster).",
        callback=backend_option,
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Tune hyperparameters on the validation segment (TPE + median pruning); the best trial is
    logged to MLflow and used by `bqx train --params best`."""
    from bqx.training.tune import tune

    s = settings()
    if jobs > 1 or backend == "ray":
        from bqx.cluster.tune import tune_distributed

        res = tune_distributed(pair, s, model=model, trials=trials, workers=jobs,
                               backend=backend, timeout=timeout, start=start, end=end)  # fmt: skip
    else:
        with progress_bar(f"tuning {pair} ({model})", total=trials, enabled=not as_json) as update:
            res = tune(
                pair,
                s,
                model=model,
                trials=trials,
                timeout=timeout,
                start=start,
                end=end,
                progress=update,
            )
    if as_json:
        print_json(res.as_dict())
        return
    console.print(
        f"{res.pair} {res.model}: best validation R² {res.best_value:.5f} after {res.trials} trials "
        f"({res.pruned} pruned) in {res.seconds:.0f}s; study {res.study} in {res.storage}"
    )
    table([{"param": k, "value": v} for k, v in res.best_params.items()], title="best parameters")
