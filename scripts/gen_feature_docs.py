"""Generate docs/features.md from the code: the catalog, the layout, the policies.

    .venv/bin/python scripts/gen_feature_docs.py            # (re)write docs/features.md
    .venv/bin/python scripts/gen_feature_docs.py --check    # exit 1 when it is stale

Everything in the document is read from the code (the family registry and its Specs, the
module docstrings, the layout, ``lookback()``), and the truncation errors are measured on the
spot on deterministic simulated data with ``benchmarks/bench_features.py``'s reference
recursions, so ``tests/features/test_docs.py`` can require the committed file to equal a
fresh rendering.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import math
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "features.md"

#: Simulated data for the truncation table (deterministic: same seed, same bars).
TRUNC_DAYS, TRUNC_SEED, TRUNC_PAIR, TRUNC_WARMUP = 42, 7, "EURUSD", 5000


def _bench() -> ModuleType:
    """benchmarks/bench_features.py (not a package: loaded from its path)."""
    name = "bqx_bench_features"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "bench_features.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def rst_to_md(text: str) -> str:
    """The few reST constructs our docstrings use, as Markdown."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = re.sub(r"::\n", ":\n", text)
    return text


def _doc(obj: Any) -> str:
    return rst_to_md(inspect.cleandoc(inspect.getdoc(obj) or ""))


def _cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _up(x: float) -> str:
    """Round up to one significant digit (a stable upper bound for the document)."""
    if x == 0:
        return "0"
    e = math.floor(math.log10(x))
    m = math.ceil(x / 10**e - 1e-9)
    if m == 10:
        m, e = 1, e + 1
    return f"{m}e{e:+03d}"


def _indented_code(doc: str) -> str:
    """Indented literal blocks of a docstring (after ``::``) as fenced code."""
    out: list[str] = []
    lines = doc.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["```", *textwrap.dedent("\n".join(block)).split("\n"), "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def truncation_section() -> list[str]:
    from bqx.data.simulator import generate
    from bqx.features._ops import EMA_TOL, ema_window, span_alpha

    res = _bench().truncation_errors(
        generate(days=TRUNC_DAYS, seed=TRUNC_SEED, pairs=[TRUNC_PAIR]).bars,
        TRUNC_PAIR,
        TRUNC_WARMUP,
    )
    lines = [
        "## Recursive indicators: finite windows and their truncation error",
        "",
        "Every feature must depend on a finite, declared number of bars, or the online path "
        "(which sees only `lookback()` bars) could not reproduce the batch path (which sees "
        "the whole history). EMAs and Wilder averages are therefore *truncated*: the weights "
        f"beyond `W` bars, whose total is below `EMA_TOL` = {EMA_TOL:g}, are dropped and the "
        "rest renormalised. Windows `W` of the smoothings used:",
        "",
        "| smoothing | alpha | window W (bars) |",
        "|---|---|---|",
    ]
    for span in (10, 12, 20, 26, 50, 100):
        a = span_alpha(span)
        lines.append(f"| EMA span {span} | 2/{span + 1} = {a:.4f} | {ema_window(a)} |")
    for n in (7, 14, 28):
        lines.append(f"| Wilder n = {n} | 1/{n} = {1 / n:.4f} | {ema_window(1 / n)} |")
    lines += [
        "",
        "Indicators that chain smoothings (MACD signal, ADX = Wilder of DX built from Wilder "
        "averages, TRIX) declare the sum of the windows.",
        "",
        "Measured truncation error against the classic infinite-history recursions (EMA "
        "seeded with the first close; Wilder RSI, ATR and ADX seeded with an SMA, as in "
        "TA-Lib), over "
        f"{res['bars']:,} simulated {res['pair']} M1 bars (seed {TRUNC_SEED}), at every bar "
        f"from bar {res['compared_from_bar']:,} on, rounded up to one digit. EMAs, RSI, ATR, "
        "ADX and +DI relative to the value; the ratio features (which cross zero) relative to "
        "their median absolute value, the scale the parity tests use. The requirement is "
        "< 1e-6; `benchmarks/bench_features.py` repeats this on ~130,000 bars.",
        "",
        "| quantity | max abs error | max relative error | relative to |",
        "|---|---|---|---|",
    ]
    ratio = ("ema_ratio", "macd", "ema_cross", "natr")
    for k, r in res["indicators"].items():
        is_ratio = k.startswith(ratio)
        rel = r["rel_to_median"] if is_ratio else r["rel_to_value"]
        lines.append(
            f"| `{k}` | {_up(r['max_abs_err'])} | {_up(rel)} | "
            f"{'median abs value' if is_ratio else 'value'} |"
        )
    lines += ["", f"Worst: {_up(res['worst_relative_error'])} (requirement 1e-06).", ""]
    return lines


def render() -> str:
    """The whole document as a string."""
    from bqx import features as F
    from bqx.config import Settings
    from bqx.features import _ops, panel, pipeline
    from bqx.features.families import FAMILIES

    if pipeline._extra_families:
        raise RuntimeError("user families are registered: the docs describe the default set")
    lay = pipeline._layout()
    cat = F.catalog()
    specs = {s.name: s for s in pipeline.base_specs()}
    n_base = len(specs)
    horizon = Settings.model_fields["horizon"].default
    max_ffill = Settings.model_fields["max_ffill_bars"].default
    deepest = cat.iloc[int(cat["lookback"].to_numpy().argmax())]
    L: list[str] = [
        "# Features",
        "",
        "<!-- Generated from the code by scripts/gen_feature_docs.py: do not edit by hand. "
        "tests/features/test_docs.py fails when this file is stale. -->",
        "",
        f"{len(lay.columns)} candidate columns from {n_base} base features in "
        f"{len(FAMILIES)} families (feature-set version `{lay.version}`). The online path "
        f"needs **{lay.lookback} bars** of history (`bqx.features.lookback()`): the deepest "
        f"column is `{deepest['name']}` ({deepest['lookback']} bars).",
        "",
        "Public API (`bqx.features`): `build(bars, pair, start=, end=, with_target=)` (batch), "
        "`at(bars, pair, ts)` (one bar, online), `catalog()`, `columns()`, `lookback()`. "
        "Command line: `bqx features build | catalog | check-lookahead | show`.",
        "",
        "## Column layout",
        "",
        "Lags count rows of the trading-time grid (below). In `columns()` order:",
        "",
        f"1. the {len(lay.lagged)} base features of the lagged families "
        f"({', '.join(f.name for f in FAMILIES if f.lagged)}), unlagged;",
        f"2. the same {len(lay.lagged)} at lag {', '.join(str(g) for g in pipeline.LAGS)} bars "
        f"(`<name>_lag<k>`, lag-major): {len(lay.lagged) * len(pipeline.LAGS)} columns;",
        f"3. the {len(lay.nonlagged)} base features of the non-lagged families "
        f"({', '.join(f.name for f in FAMILIES if not f.lagged)});",
        f"4. the {len(lay.causal)} temporal-causality columns: the `w60_*` and `agg_*` BQX "
        f"features at lag {pipeline.CAUSAL_LAG} (`<name>_lag{pipeline.CAUSAL_LAG}`). The "
        f"target is `w60_avg` {horizon} bars ahead, so its own value becomes known "
        f"{horizon} bars later; a feature derived from past targets must be lagged at least "
        f"{horizon + 1} bars.",
        "",
        f"Total: {len(lay.lagged)} x {1 + len(pipeline.LAGS)} + {len(lay.nonlagged)} + "
        f"{len(lay.causal)} = **{len(lay.columns)}**. Every value at bar t is a function of "
        "bars at or before t only; `bqx features check-lookahead` verifies it on your data.",
        "",
        "## Target",
        "",
        f"`y(t) = bqx_h(t + h)`, h = {horizon} bars by default (setting `horizon`), where "
        "`bqx_w(t) = mean_{i=1..w} ln(close_t / close_{t-i})`: it depends only on bars t..t+h, "
        "is positive when the price rose, and is in log-return units. The alternative "
        '`target = "return"` is `ln(close_{t+h} / close_t)`. The feature store keeps the '
        "target with the features (NaN where the horizon runs past the data); "
        "train/validation/test segments are separated by a purge gap of at least h + 1 bars.",
        "",
        "## Trading-time grid and missing bars",
        "",
        _indented_code(_doc(panel)),
        "",
        f"The default `max_ffill` is {max_ffill} bars (setting `max_ffill_bars`).",
        "",
        "Source fields beyond OHLC: when a pair's source has no volume or no spread, the "
        "features that need them are NaN (never filled with made-up values) and "
        "`bqx features build` says so. Columns affected:",
        "",
        "| source field | base features | columns |",
        "|---|---|---|",
    ]
    for need, label in (
        ("volume", "tick volume"),
        ("spread", "spread"),
        ("cross", "all 28 pairs (cross-section)"),
    ):
        hit = cat[[need in n.split(",") for n in cat["needs"]]]
        L.append(f"| {label} | {hit['base'].nunique()} | {len(hit)} |")
    L += ["", "## Numerical policy", "", _indented_code(_doc(_ops)), ""]
    L += truncation_section()
    L += [
        "## The compiled online path",
        "",
        "A prediction evaluates a version's features at a handful of rows (t and its lags). "
        "Each family's online point path (`compute_online`) is a numba kernel "
        "(`bqx.features._jit`; kernels in `_kern_sums.py`, `_kern_windows.py`, "
        "`_kern_small.py` and the family modules): the same definitions without the "
        "per-call overhead of dozens of small numpy calls (docs/performance.md). Both "
        "online calls (all columns and `only=`) use the same kernels, so they agree bit "
        "for bit; the parity tests hold them to the batch build within 1e-9. Kernels "
        "compile on first use into `~/.cache/bqx/numba-<hash of this package>` (or "
        "`$NUMBA_CACHE_DIR`): about 20-30 s once per source tree, about 1 s to load "
        "afterwards; `bqx serve` compiles them before it reports ready. `BQX_JIT=0` runs "
        "them as plain Python (debugging; slow).",
        "",
        "## Adding your own features",
        "",
        "Register a `Family` with `bqx.features.register_family` (its columns are appended "
        "after the built-in ones), then audit it with "
        "`bqx.features.lookahead.check_lookahead(bars, pairs=[...])` or "
        "`bqx features check-lookahead --plugin my_features.py` (a module or file whose import "
        "registers the family): every column that changes once the bars after t are "
        "removed, or that needs more history than its `Spec.lookback` declares, is reported "
        "(exit code 1). See the `bqx.features.lookahead` module docstring for an example.",
        "",
        "## Catalog",
        "",
        "Base features by family; `lookback` is the number of bars before t the value reads "
        "(lagged columns add their lag). `bqx features catalog --json` lists all "
        f"{len(lay.columns)} columns.",
        "",
    ]
    for fam in FAMILIES:
        mod = sys.modules[fam.compute.__module__]
        kind = f"lagged: x{1 + len(pipeline.LAGS)} columns" if fam.lagged else "not lagged"
        L += [f"### {fam.name} ({len(fam.specs)} base features, {kind})", ""]
        L += [_indented_code(_doc(mod)), ""]
        L += ["| feature | lookback | formula | needs |", "|---|---|---|---|"]
        for s in fam.specs:
            needs = ", ".join(s.needs)
            L.append(f"| `{s.name}` | {s.lookback} | {_cell(s.description)} | {needs} |")
        L.append("")
    text = "\n".join(L)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        old = args.out.read_text() if args.out.exists() else ""
        if old != text:
            print(f"{args.out} is stale: run scripts/gen_feature_docs.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
