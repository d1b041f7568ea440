"""``bqx features``: build the feature store, list the catalog, audit lookahead, inspect a bar."""

from __future__ import annotations

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

app = typer.Typer(
    help="Causal features: build the store, catalog, lookahead audit, values at a bar.",
    no_args_is_help=True,
)

#: Default range of the lookahead audit when no --start is given: ~10 trading days.
AUDIT_DAYS = 14


PluginOpt = typer.Option(
    None,
    "--plugin",
    help="A module name or .py file that registers feature families "
    "(bqx.features.register_family) when imported; repeatable.",
)


def _load_plugins(plugins: list[str] | None) -> None:
    """Import user modules that register feature families (each once per process)."""
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    for item in plugins or []:
        if item.endswith(".py") or "/" in item or "\\" in item:
            path = Path(item).resolve()
            if not path.is_file():
                raise typer.BadParameter(
                    f"plugin file {item} does not exist", param_hint="--plugin"
                )
            name = "bqx_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise typer.BadParameter(f"cannot load {item} as Python", param_hint="--plugin")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as e:
                raise typer.BadParameter(f"no module named {item!r}", param_hint="--plugin") from e


def missing_field_warnings(missing: dict[str, list[str]]) -> list[str]:
    """One sentence per pair whose source lacks a field, with the columns that become NaN.

    E.g. ``EURUSD: no volume in the source: 10 volume features and 1 technical feature
    (mfi_14) will be NaN (15 of 809 columns)``. Counts come from the catalog's ``needs``.
    """
    from bqx import features as F

    cat = F.catalog()
    total = len(cat)
    out = []
    for pair, fields in sorted(missing.items()):
        if "all bars" in fields:
            out.append(f"{pair}: no bars in the store for this range: nothing was built")
            continue
        fields = [f for f in fields if f != "all bars"]
        hit = cat[[bool(set(n.split(",")) & set(fields)) for n in cat["needs"]]]
        base = hit.drop_duplicates("base")
        groups = sorted(
            base.groupby("family", sort=False),
            key=lambda kv: (kv[0] not in fields, -len(kv[1])),  # the field's own family first
        )
        parts = []
        for fam, grp in groups:
            n = len(grp)
            names = f" ({', '.join(grp['base'])})" if n <= 3 and fam not in fields else ""
            parts.append(f"{n} {fam} feature{'s' if n != 1 else ''}{names}")
        what = " and ".join(fields)
        if not parts:
            listed = "no feature"
        elif len(parts) == 1:
            listed = parts[0]
        else:
            listed = ", ".join(parts[:-1]) + " and " + parts[-1]
        out.append(
            f"{pair}: no {what} in the source: {listed} will be NaN ({len(hit)} of {total} columns)"
        )
    return out


@app.command("build")
@handle_errors
def build_cmd(
    pairs: str = typer.Option("all", help="Comma-separated pairs, or 'all'."),
    start: str | None = typer.Option(
        None, help="First month to (re)build (default: all data).", callback=time_option
    ),
    end: str | None = typer.Option(
        None, help="Last month to (re)build (default: all data).", callback=time_option
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild months even if unchanged."),
    jobs: int | None = typer.Option(
        None, min=1, help="Processes computing pair-months (default: CPU count)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Materialise per-pair monthly Parquet of the features and the target.

    Incremental and idempotent: a month is rebuilt only when the bars it depends on (its own,
    the lookback before it, the horizon after it, across all pairs) or the feature set changed.
    Pair-months are computed in ``--jobs`` forked processes sharing one bar panel (the files
    are the same bytes as with one process).
    """
    import os

    from bqx.data.store import open_store
    from bqx.features.store import FeatureStore
    from bqx.universe import PAIRS

    s = settings()
    s.ensure_home()
    t0, t1 = parse_time(start, "--start"), parse_time(end, "--end")
    store = open_store(settings=s)
    fs = FeatureStore(
        s.features_dir, horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
    )
    try:
        with progress_bar("building features (pair-months)", enabled=not as_json) as update:
            rep = fs.build(
                store, pairs, t0, t1, force=force, progress=update, jobs=jobs or os.cpu_count() or 1
            )
        absent_pairs = [p for p in PAIRS if p not in set(store.pairs())]
    finally:
        store.close()
    warnings = missing_field_warnings(rep.missing)
    if absent_pairs and rep.months_built:
        warnings.append(
            f"the store has no bars for {', '.join(absent_pairs)}: currency indices and "
            "correlations that need them are NaN"
        )
    d = rep.as_dict()
    d["features_dir"] = str(s.features_dir)
    d["mb_written"] = round(rep.bytes_written / 1e6, 2)
    d["warnings"] = warnings
    if as_json:
        print_json(d)
        return
    rows = [
        {
            "pair": p,
            "months built": len(rep.months_built.get(p, [])),
            "months skipped": len(rep.months_skipped.get(p, [])),
            "built": ", ".join(rep.months_built.get(p, [])),
        }
        for p in rep.pairs
    ]
    table(rows, title=f"feature store {s.features_dir}")
    n_built = sum(len(v) for v in rep.months_built.values())
    n_skip = sum(len(v) for v in rep.months_skipped.values())
    console.print(
        f"built {n_built} pair-months, skipped {n_skip} unchanged; wrote {rep.rows_written:,} "
        f"rows ({rep.bytes_written / 1e6:,.1f} MB) in {rep.seconds:.1f}s"
    )
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {w}")


@app.command("catalog")
@handle_errors
def catalog_cmd(
    family: str | None = typer.Option(None, help="Only this family (e.g. bqx, reg, technical)."),
    plugin: list[str] | None = PluginOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The candidate columns: name, family, lag, lookback (bars) and formula."""
    _load_plugins(plugin)
    from bqx import features as F

    cat = F.catalog()
    if family is not None:
        fams = list(dict.fromkeys(cat["family"]))
        if family not in fams:
            raise typer.BadParameter(
                f"unknown family {family!r}; one of {', '.join(fams)}", param_hint="--family"
            )
        cat = cat[cat["family"] == family]
    if as_json:
        print_json(cat.to_dict("records"))
        return
    table(
        cat.to_dict("records"),
        title="feature catalog",
        columns=["name", "family", "lag", "lookback", "description"],
    )
    console.print(
        f"{len(cat)} columns ({cat['base'].nunique()} base features); the online path needs "
        f"{F.lookback()} bars of history"
    )


@app.command("check-lookahead")
@handle_errors
def check_lookahead_cmd(
    pairs: str | None = typer.Option(
        None, help="Pairs to check (comma-separated; default: every pair in the store)."
    ),
    samples: int = typer.Option(20, min=1, help="Bars to check, spread over the range."),
    start: str | None = typer.Option(
        None,
        help=f"First bar to check (default: {AUDIT_DAYS} days before --end).",
        callback=time_option,
    ),
    end: str | None = typer.Option(
        None, help="Last bar to check (default: the newest bar).", callback=time_option
    ),
    seed: int = typer.Option(0, help="Random seed for the sampled bars."),
    tol: float = typer.Option(1e-9, help="Tolerance, relative to each column's median |value|."),
    plugin: list[str] | None = PluginOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit the features for lookahead; exit code 1 when a column leaks.

    Re-computes every column at sampled bars t on the bars cut off at t and compares with the
    full-history values: a column that differs reads the future (or more history than its
    declared lookback). Load your own families with --plugin (see bqx.features.lookahead).
    """
    import pandas as pd

    from bqx import features as F
    from bqx.data.store import open_store
    from bqx.errors import NoDataError
    from bqx.features.lookahead import check_lookahead

    _load_plugins(plugin)
    s = settings()
    store = open_store(settings=s)
    try:
        latest = store.latest()
        if not latest:
            raise NoDataError(
                "the bar store is empty", hint="run `bqx data generate` or `bqx data ingest`"
            )
        t1 = parse_time(end, "--end")
        if t1 is None:
            t1 = max(latest.values())
        t0 = parse_time(start, "--start")
        if t0 is None:
            t0 = t1 - pd.Timedelta(days=AUDIT_DAYS)
        # all pairs (cross features need them), with lookback history before the first bar
        look = pd.Timedelta(s.interval) * int(F.lookback() * 1.5 + 10) + pd.Timedelta(days=4)
        bars = store.read(None, t0 - look, t1)
    finally:
        store.close()
    if not len(bars):
        raise NoDataError(f"no bars between {t0 - look} and {t1}")
    with progress_bar("checking lookahead (bars)", enabled=not as_json) as update:
        rep = check_lookahead(
            bars,
            pairs=pairs,
            samples=samples,
            seed=seed,
            tol=tol,
            start=t0,
            end=t1,
            interval=s.interval,
            max_ffill=s.max_ffill_bars,
            progress=update,
        )
    if as_json:
        print_json(rep.as_dict())
    else:
        where = f"{rep.timestamps[0]:%Y-%m-%d %H:%M} .. {rep.timestamps[-1]:%Y-%m-%d %H:%M}"
        head = (
            f"{rep.columns_checked} columns x {rep.comparisons} (bar, pair) comparisons "
            f"({rep.samples} bars in {where}, {len(rep.pairs)} "
            f"pair{'s' if len(rep.pairs) != 1 else ''}) in {rep.seconds:.1f}s"
        )
        if rep.ok:
            console.print(f"[green]no lookahead[/green]: {head}")
        else:
            table(
                rep.leaking.to_dict("records"),
                title="columns that differ once the future is removed",
            )
            bases = sorted(set(rep.leaking["base"]))
            console.print(
                f"[red]LOOKAHEAD[/red]: {len(rep.leaking)} columns from {len(bases)} base "
                f"features ({', '.join(bases[:10])}{', ...' if len(bases) > 10 else ''}) "
                f"differ; {head}"
            )
    if not rep.ok:
        raise typer.Exit(1)


@app.command("show")
@handle_errors
def show_cmd(
    pair: str = typer.Argument(..., help="Pair, e.g. EURUSD."),
    timestamp: str | None = typer.Option(
        None, "--timestamp", "-t", help="As-of time (default: the pair's newest bar)."
    ),
    family: str | None = typer.Option(None, help="Only this family's columns."),
    plugin: list[str] | None = PluginOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The candidate feature values of PAIR at one bar (the online path).

    Reads the last lookback() bars of all pairs at or before the timestamp from the store and
    evaluates bqx.features.at() on them.
    """
    import time

    import numpy as np

    from bqx import features as F
    from bqx.data.store import open_store
    from bqx.errors import NoDataError
    from bqx.universe import normalize_pair

    _load_plugins(plugin)
    s = settings()
    pair = normalize_pair(pair)
    store = open_store(settings=s)
    try:
        ts = parse_time(timestamp, "--timestamp")
        if ts is None:
            ts = store.latest([pair]).get(pair)
            if ts is None:
                raise NoDataError(
                    f"no bars for {pair} in the store",
                    hint="run `bqx data generate` or `bqx data ingest`",
                )
        n = F.lookback() + s.max_ffill_bars + 20
        bars = store.read_asof(ts, n)
    finally:
        store.close()
    if not len(bars) or pair not in set(bars["pair"]):
        raise NoDataError(f"no bars for {pair} at or before {ts}")
    t0 = time.perf_counter()
    vals = F.at(bars, pair, ts, interval=s.interval, max_ffill=s.max_ffill_bars)
    ms = (time.perf_counter() - t0) * 1e3
    cat = F.catalog().set_index("name")
    if family is not None:
        keep = [c for c in vals.index if cat.at[c, "family"] == family]
        if not keep:
            fams = ", ".join(dict.fromkeys(cat["family"]))
            raise typer.BadParameter(
                f"unknown family {family!r}; one of {fams}", param_hint="--family"
            )
        vals = vals[keep]
    v = vals.to_numpy(dtype=np.float64)
    out = {
        "pair": pair,
        "requested": ts,
        "asof": vals.name,
        "columns": len(vals),
        "nan_columns": int(np.isnan(v).sum()),
        "feature_set_version": F.feature_set_version(),
        "values": {k: float(x) for k, x in zip(vals.index, v, strict=True)},
    }
    if as_json:
        print_json(out)
        return
    fam_of = cat["family"].to_dict()
    lag_of = cat["lag"].to_dict()
    rows = [
        {"name": k, "family": fam_of[k], "lag": lag_of[k], "value": float(x)}
        for k, x in zip(vals.index, v, strict=True)
    ]
    table(rows, title=f"{pair} at {vals.name:%Y-%m-%d %H:%M} UTC")
    console.print(
        f"{len(vals)} columns, {out['nan_columns']} NaN; computed from {len(bars):,} bars of "
        f"{bars['pair'].nunique()} pairs in {ms:.1f} ms"
    )
