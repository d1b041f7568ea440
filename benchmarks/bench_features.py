"""Feature pipeline speed, memory and truncation error (issue 3, "Must show"). Prints JSON.

    .venv/bin/python benchmarks/bench_features.py [--bars 130000] [--at-samples 1000]
        [--pair EURUSD] [--profile] [--skip e2e,...]

Data: the built-in simulator, all 28 pairs (currency indices and correlations need them), M1,
about ``--bars`` bars per pair (130,000 = about 126 calendar days of 24x5 trading; the issue
calls it "about 6 months of M1"). Each measurement runs in a fresh subprocess so its peak RSS
is its own (``ru_maxrss``; plus ``VmHWM`` after resetting it through
``/proc/self/clear_refs`` right before the measured call, which isolates the call's peak):

* ``batch_one_pair``: ``bqx.features.build(panel, pair)`` for one pair over the whole
  history, from a Panel of the 28 pairs (and from the long DataFrame, which includes building
  the Panel): wall time (first call, then a repeat), bars/s, peak RSS.
* ``end_to_end_store``: ``FeatureStore.build`` of all 28 pairs x the whole history from a
  DuckDB bar store into an empty directory (read bars, build the Panel, compute, write
  Parquet), then an incremental no-op rerun. Targets: < 3 min, < 4 GiB.
* ``at_latency``: ``bqx.features.at(panel, pair, t)`` for random bars t with the 28 pairs'
  whole history in memory as a Panel (target p99 < 10 ms), ``at_array`` (no pandas), and
  ``at`` given a long DataFrame: the recent window a service would read (``read_asof``), and
  the whole history (a Panel is rebuilt from all of it on every call: do not do this).
* ``truncation``: our finite-window EMA/Wilder indicators vs the classic infinite-history
  recursions (EMA seeded with the first value; Wilder RSI/ATR/ADX seeded with an SMA) over the
  whole series, compared at every bar after ``--warmup`` bars (issue: < 1e-6 relative).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve()
BARS_PER_CAL_DAY = 1440 * 5 / 7  # the simulator trades 24x5 (Sunday 17:00 - Friday 17:00 NY)


# =========================================================================================
# machine and memory helpers
# =========================================================================================
def machine() -> dict[str, Any]:
    import pyarrow as pa
    import scipy

    mem = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "pyarrow": pa.__version__,
    }


def _status_mib(key: str) -> float | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB (None off Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak is the call's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _maxrss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# =========================================================================================
# data
# =========================================================================================
def make_data(data: Path, bars: int, seed: int) -> dict[str, Any]:
    """Simulate all 28 pairs and write them to ``bars.parquet`` and a DuckDB bar store."""
    from datetime import timedelta

    from bqx.data.simulator import generate
    from bqx.data.store import DuckDBStore

    days = int(np.ceil(bars / BARS_PER_CAL_DAY)) + 1
    t0 = time.perf_counter()
    df = generate(days=days, seed=seed, start="2024-01-01").bars
    t1 = time.perf_counter()
    df.to_parquet(data / "bars.parquet", index=False)
    store = DuckDBStore(data / "bars.duckdb", timedelta(minutes=1))
    store.upsert(df)
    store.close()
    t2 = time.perf_counter()
    per_pair = df.groupby("pair").size()
    return {
        "pairs": int(df["pair"].nunique()),
        "bars_total": len(df),
        "bars_per_pair": int(per_pair.median()),
        "calendar_days": days,
        "first": df["ts"].min().isoformat(),
        "last": df["ts"].max().isoformat(),
        "simulate_s": round(t1 - t0, 2),
        "write_s": round(t2 - t1, 2),
    }


# =========================================================================================
# workers (each in its own process)
# =========================================================================================
def worker_batch(data: Path, pair: str) -> dict[str, Any]:
    from bqx import features as F
    from bqx.features.panel import Panel

    F.columns()  # registry and layout: import-time work, not the build
    bars = pd.read_parquet(data / "bars.parquet")
    rss_bars = _status_mib("VmRSS")
    t0 = time.perf_counter()
    panel = Panel.from_bars(bars)
    panel_s = time.perf_counter() - t0
    rss0 = _status_mib("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    df = F.build(panel, pair)
    cold = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    rows = len(df)
    result_mib = round(df.memory_usage(deep=False).sum() / 2**20, 1)
    del df
    t0 = time.perf_counter()
    df = F.build(panel, pair)
    warm = time.perf_counter() - t0
    del df
    t0 = time.perf_counter()
    df = F.build(bars, pair)  # long frame: includes building the Panel
    from_frame = time.perf_counter() - t0
    del df
    return {
        "pair": pair,
        "rows": rows,
        "columns": len(F.columns()),
        "panel_from_bars_s": round(panel_s, 3),
        "build_s_first": round(cold, 3),
        "build_s_repeat": round(warm, 3),
        "bars_per_s": round(rows / cold),
        "build_from_long_frame_s": round(from_frame, 3),
        "result_mib_float64": result_mib,
        "rss_mib_bars_loaded": rss_bars,
        "rss_mib_before_build": rss0,
        "peak_rss_mib_during_build": peak if reset else None,
        "build_extra_peak_mib": round(peak - rss0, 1) if reset and peak and rss0 else None,
        "process_peak_rss_mib": _maxrss_mib(),
    }


def worker_e2e(data: Path, profile: bool) -> dict[str, Any]:
    from datetime import timedelta

    from bqx.data.store import DuckDBStore
    from bqx.features.store import FeatureStore

    root = data / "features"
    shutil.rmtree(root, ignore_errors=True)
    store = DuckDBStore(data / "bars.duckdb", timedelta(minutes=1))
    fs = FeatureStore(root, horizon=60, target="bqx", max_ffill=5)
    rss0 = _status_mib("VmRSS")
    prof_rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        rep = fs.build(store)
        pr.disable()
        st = pstats.Stats(pr)
        stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
        items = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:25]
        for (file, line, fn), (_cc, nc, tt, ct, _callers) in items:
            prof_rows.append(
                {
                    "function": f"{Path(file).name}:{line}({fn})",
                    "calls": nc,
                    "tottime_s": round(tt, 2),
                    "cumtime_s": round(ct, 2),
                }
            )
    else:
        rep = fs.build(store)
    wall = time.perf_counter() - t0
    peak = _maxrss_mib()
    on_disk = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    t0 = time.perf_counter()
    rep2 = fs.build(store)
    rerun = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = fs.read("EURUSD")
    read_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "pairs": len(rep.pairs),
        "months_built": sum(len(v) for v in rep.months_built.values()),
        "rows_written": rep.rows_written,
        "bytes_written": rep.bytes_written,
        "mib_written": round(on_disk / 2**20, 1),
        "wall_s": round(wall, 2),
        "rows_per_s": round(rep.rows_written / wall),
        "rss_mib_before": rss0,
        "peak_rss_mib": peak,
        "target_met": bool(wall < 180 and peak < 4096),
        "incremental_rerun_s": round(rerun, 2),
        "incremental_rerun_months_built": sum(len(v) for v in rep2.months_built.values()),
        "read_one_pair_809_s": round(read_s, 2),
        "read_one_pair_rows": len(got),
    }
    if profile:
        out["profile_top_cumulative"] = prof_rows
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


def worker_at(data: Path, pair: str, samples: int, seed: int) -> dict[str, Any]:
    from bqx import features as F
    from bqx.data.bars import ts_ns
    from bqx.features.panel import Panel

    bars = pd.read_parquet(data / "bars.parquet")
    panel = Panel.from_bars(bars)
    lb = F.lookback()
    j = panel.col(pair)
    cand = np.flatnonzero(panel.observed[:, j])
    cand = cand[cand >= lb + 20]
    rng = np.random.default_rng(seed)
    rows = rng.choice(cand, size=min(samples, len(cand)), replace=False)
    stamps = [pd.Timestamp(int(panel.ts[r]), tz="UTC") for r in rows]
    for t in stamps[:10]:  # warm-up: lazy imports, caches, allocator
        F.at(panel, pair, t)

    def timed(fn: Any, items: list[Any]) -> list[float]:
        out = []
        for it in items:
            t0 = time.perf_counter_ns()
            fn(it)
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    def summary(ms: list[float]) -> dict[str, Any]:
        return {
            "n": len(ms),
            "median_ms": round(statistics.median(ms), 3),
            "p90_ms": round(_pct(ms, 90), 3),
            "p99_ms": round(_pct(ms, 99), 3),
            "max_ms": round(max(ms), 3),
        }

    res: dict[str, Any] = {"pair": pair, "history_rows": len(panel), "pairs_in_memory": 28}
    res["at_panel"] = summary(timed(lambda t: F.at(panel, pair, t), stamps))
    res["at_panel"]["target_p99_ms"] = 10.0
    res["at_panel"]["target_met"] = res["at_panel"]["p99_ms"] < 10.0
    res["at_array_panel"] = summary(timed(lambda t: F.at_array(panel, pair, t), stamps))

    # a long DataFrame of the recent window (what `store.read_asof(t, n)` returns)
    ts_all = ts_ns(bars["ts"])
    order = np.argsort(ts_all, kind="stable")
    sorted_bars = bars.iloc[order].reset_index(drop=True)
    ts_sorted = ts_all[order]
    n = lb + panel.max_ffill + 11
    windows = []
    for r, t in zip(rows[:100], stamps[:100], strict=True):
        lo = int(np.searchsorted(ts_sorted, panel.ts[max(0, r - n)], side="left"))
        hi = int(np.searchsorted(ts_sorted, t.value, side="right"))
        windows.append((sorted_bars.iloc[lo:hi], t))
    res["recent_window_bars"] = len(windows[0][0])
    res["at_long_frame_recent_window"] = summary(timed(lambda w: F.at(w[0], pair, w[1]), windows))
    # the whole history as a long frame: a Panel of all of it is built on every call
    res["at_long_frame_whole_history"] = summary(timed(lambda t: F.at(bars, pair, t), stamps[:3]))
    return res


# ---- truncation error -------------------------------------------------------------------
def _lfilter_ema(x: np.ndarray, alpha: float, seed_value: float) -> np.ndarray:
    """y[0] = alpha x[0] + (1-alpha) seed, y[t] = alpha x[t] + (1-alpha) y[t-1]."""
    from scipy.signal import lfilter

    y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=np.array([(1.0 - alpha) * seed_value]))
    return np.asarray(y)


def classic_ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Infinite-history EMA seeded with the first value (the pandas ``adjust=False`` form)."""
    return _lfilter_ema(x, alpha, float(x[0]))


def classic_wilder(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder's smoothing seeded with the SMA of ``x[first:first+n]`` (value at
    ``first+n-1``), then ``y[t] = y[t-1] + (x[t] - y[t-1]) / n``; NaN before the seed."""
    out = np.full(len(x), np.nan)
    s = first + n - 1
    seed = float(np.mean(x[first : first + n]))
    out[s] = seed
    out[s + 1 :] = _lfilter_ema(x[s + 1 :], 1.0 / n, seed)
    return out


def classic_indicators(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> dict:
    """RSI(7/14/28), ATR(14), ADX(14) and +DI(14) by Wilder's (TA-Lib's) recursions."""
    del o
    d = np.diff(c, prepend=np.nan)
    out: dict[str, np.ndarray] = {}
    for n in (7, 14, 28):
        g = classic_wilder(np.maximum(d, 0.0), n, 1)
        lv = classic_wilder(np.maximum(-d, 0.0), n, 1)
        out[f"rsi_{n}"] = 100.0 * g / (g + lv)
    pc = np.concatenate([[np.nan], c[:-1]])
    tr = np.maximum.reduce([h - lo, np.abs(h - pc), np.abs(lo - pc)])
    atr14 = classic_wilder(tr, 14, 1)
    out["atr_14"] = atr14
    up = h - np.concatenate([[np.nan], h[:-1]])
    dn = np.concatenate([[np.nan], lo[:-1]]) - lo
    pdm = np.where((up > dn) & (up > 0), up, 0.0)
    mdm = np.where((dn > up) & (dn > 0), dn, 0.0)
    # Wilder's running sums S = S - S/14 + x are 14 x his average: DI ratios are the same
    pdi = 100.0 * classic_wilder(pdm, 14, 1) / atr14
    mdi = 100.0 * classic_wilder(mdm, 14, 1) / atr14
    dx = 100.0 * np.abs(pdi - mdi) / (pdi + mdi)
    out["plus_di_14"] = pdi
    out["adx_14"] = classic_wilder(dx, 14, 14)
    return out


def truncation_errors(bars: pd.DataFrame, pair: str, warmup: int = 5000) -> dict[str, Any]:
    """Max error of our finite-window recursive indicators vs the infinite-history recursions,
    at every bar from ``warmup`` on (the seeds' own start-up bias has decayed below 1e-12 by
    then). ``rel_to_value``: |ours - classic| / |classic|; ``rel_to_median``: |ours - classic|
    divided by the column's median |value| (the scale the parity tests use)."""
    from bqx import features as F
    from bqx.features._ops import ema, span_alpha

    one = bars[bars["pair"] == pair]
    feats = F.build(one, pair)
    o, h, lo, c = (
        one.sort_values("ts")[k].to_numpy(dtype=np.float64)
        for k in ("open", "high", "low", "close")
    )
    if len(c) != len(feats) or not np.isfinite(c).all():
        raise ValueError("truncation check needs gap-free bars (simulator data)")
    if len(c) <= warmup + 1000:
        raise ValueError(f"need more than {warmup + 1000} bars, got {len(c)}")
    ref = classic_indicators(o, h, lo, c)
    ema_ref = {s: classic_ema(c, span_alpha(s)) for s in (10, 12, 20, 26, 50, 100)}
    ours: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in (10, 20, 50, 100):
        ours[f"ema_{s}"] = (ema(c, span_alpha(s)), ema_ref[s])  # what ema_close() computes
    for k in ("rsi_7", "rsi_14", "rsi_28", "adx_14", "plus_di_14"):
        ours[k] = (feats[k].to_numpy(), ref[k])
    ours["atr_14"] = (feats["natr_14"].to_numpy() * c / 100.0, ref["atr_14"])
    for s in (10, 20, 50, 100):
        ours[f"ema_ratio_{s}"] = (feats[f"ema_ratio_{s}"].to_numpy(), c / ema_ref[s] - 1.0)
    ours["macd"] = (feats["macd"].to_numpy(), (ema_ref[12] - ema_ref[26]) / c)
    ours["ema_cross_10_50"] = (feats["ema_cross_10_50"].to_numpy(), ema_ref[10] / ema_ref[50] - 1.0)
    ours["natr_14"] = (feats["natr_14"].to_numpy(), 100.0 * ref["atr_14"] / c)
    out: dict[str, Any] = {"pair": pair, "bars": len(c), "compared_from_bar": warmup}
    worst = 0.0
    rows = {}
    for k, (a, b) in ours.items():
        a, b = a[warmup:], b[warmup:]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError(f"{k}: non-finite values after warm-up")
        err = np.abs(a - b)
        med = float(np.median(np.abs(b)))
        r_val = float(np.max(err / np.abs(b))) if np.all(b != 0) else float("nan")
        r_med = float(np.max(err) / med)
        rows[k] = {
            "max_abs_err": float(np.max(err)),
            "rel_to_value": r_val,
            "rel_to_median": r_med,
            "median_abs_value": med,
        }
        # EMA/RSI/ATR/ADX: relative to the value; ratio features: relative to their median
        worst = max(
            worst, r_med if k.startswith(("ema_ratio", "macd", "ema_cross", "natr")) else r_val
        )
    out["indicators"] = rows
    out["worst_relative_error"] = worst
    out["requirement"] = 1e-6
    out["ok"] = bool(worst < 1e-6)
    return out


def worker_trunc(data: Path, pair: str, warmup: int) -> dict[str, Any]:
    bars = pd.read_parquet(data / "bars.parquet")
    return truncation_errors(bars[bars["pair"] == pair].reset_index(drop=True), pair, warmup)


# =========================================================================================
# driver
# =========================================================================================
def _run_worker(name: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE), "--worker", name, "--data", str(data)]
    cmd += ["--pair", args.pair, "--at-samples", str(args.at_samples), "--warmup", str(args.warmup)]
    if args.profile:
        cmd.append("--profile")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:], "returncode": proc.returncode}
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = round(wall, 2)  # incl. interpreter start, imports, loading data
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--bars", type=int, default=130_000, help="bars per pair (approx.)")
    ap.add_argument("--pair", default="EURUSD")
    ap.add_argument("--at-samples", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile the end-to-end build")
    ap.add_argument("--skip", default="", help="comma-separated: batch,e2e,at,trunc")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        data = Path(args.data)
        fn = {
            "batch": lambda: worker_batch(data, args.pair),
            "e2e": lambda: worker_e2e(data, args.profile),
            "at": lambda: worker_at(data, args.pair, args.at_samples, args.seed),
            "trunc": lambda: worker_trunc(data, args.pair, args.warmup),
        }[args.worker]
        print(json.dumps(fn()))
        return

    skip = {s for s in args.skip.split(",") if s}
    out: dict[str, Any] = {
        "benchmark": "features",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    # other processes share the CPUs: record the load so contended timings can be recognised
    with contextlib.suppress(OSError, AttributeError):
        out["machine"]["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    from bqx import features as F

    out["feature_set"] = {
        "columns": len(F.columns()),
        "lookback_rows": F.lookback(),
        "version": F.feature_set_version(),
    }
    with tempfile.TemporaryDirectory(prefix="bqx-bench-features-") as tmp:
        data = Path(tmp)
        out["data"] = make_data(data, args.bars, args.seed)
        for key, name in (
            ("batch_one_pair", "batch"),
            ("end_to_end_store", "e2e"),
            ("at_latency", "at"),
            ("truncation", "trunc"),
        ):
            if name not in skip:
                out[key] = _run_worker(name, data, args)
    with contextlib.suppress(OSError, AttributeError):
        out["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
