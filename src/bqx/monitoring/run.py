"""One monitoring pass: mature, input drift, live quality (R²-drop rule), alerts, purge.

:func:`run_pass` is the entry point for ``bqx monitor run`` and the operator loop. A pass
over an empty decision log returns an empty, valid report. Failures of a step are caught,
reported in the report's ``errors`` and raised as a critical ``monitoring_failure`` alert
(monitoring never dies of one bad pair).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bqx.monitoring.alerts import AlertManager, Condition
from bqx.monitoring.mature import mature
from bqx.monitoring.notifiers import Notifier
from bqx.monitoring.quality import quality_report

log = logging.getLogger(__name__)


class VersionListing:
    """Every registered version, by pair, read from the registry once, on first use
    (:meth:`get`; None when the registry cannot list them all): a pass looks up 28+ pairs
    and versions, and each ``versions(pair)`` / ``get`` reads the registry's tables again.
    Nothing is read when the pass needs no version (an empty decision log)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._done = False
        self._by: dict[str, list[Any]] | None = None

    def get(self) -> dict[str, list[Any]] | None:
        if not self._done:
            self._done = True
            try:
                by: dict[str, list[Any]] = {}
                for v in self.registry.versions():
                    by.setdefault(str(v.pair), []).append(v)
                self._by = by
            except Exception:
                log.debug("registry: no listing of all versions", exc_info=True)
        return self._by


def test_metrics_by_version(
    registry: Any, pairs: list[str], listing: dict[str, list[Any]] | None = None
) -> dict[str, dict[str, dict]]:
    """``{pair: {version: {"r2": test R², "da": test DA}}}`` from the registry
    (``listing``: :meth:`VersionListing.get`, read once per pass)."""
    out: dict[str, dict[str, dict]] = {}
    for p in pairs:
        if listing is not None:
            vs = listing.get(p, [])
        else:
            try:
                vs = registry.versions(p)
            except Exception:
                log.warning("registry unavailable for %s", p, exc_info=True)
                continue
        out[p] = {str(v.version): {"r2": v.test_r2, "da": v.test_da} for v in vs}
    return out


class _Listed:
    """A registry whose ``get(pair, version)`` answers from one listing of all versions
    (the baselines of a pass), asking the registry itself for anything not listed."""

    def __init__(self, registry: Any, listing: dict[str, list[Any]]) -> None:
        self._registry = registry
        self._by = {(p, str(v.version)): v for p, vs in listing.items() for v in vs}

    def get(self, pair: str, version: Any = None, alias: str | None = None) -> Any:
        hit = self._by.get((pair, str(version))) if alias is None else None
        return hit if hit is not None else self._registry.get(pair, version, alias)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


def quality_conditions(report: dict[str, Any], window: str = "1d") -> list[Condition]:
    """One ``quality_r2_drop`` condition per (pair, version) over ``window``."""
    conds = []
    for r in report["rows"]:
        if r["window"] != window:
            continue
        v = r["r2_drop"]
        fp = f"quality_r2_drop:{r['pair']}:{r['model_version']}"
        if v["drop"] is None:
            continue
        m = r["metrics"]["r2"]
        msg = (
            f"live R² {m['value']:.3f} (se {m['se']:.3f}, n_eff {m['n_eff']:.0f}) vs test "
            f"{r['test'].get('r2', float('nan')):.3f}: drop {v['drop']:.3f}, "
            + ("statistically significant" if v["significant"] else "within noise")
        )
        conds.append(Condition("quality_r2_drop", v["alert"], msg, "critical", r["pair"], fp))
    return conds


#: The decision-log columns live quality reads (:func:`bqx.monitoring.quality.quality_report`).
QUALITY_COLUMNS = (
    "decision_id",
    "pair",
    "asof_ts",
    "horizon",
    "prediction",
    "interval_lo",
    "interval_hi",
    "model_version",
    "realized_target",
)
#: Live metrics kept in a pass summary (name in ``quality_report`` -> summary key).
SUMMARY_METRICS = ("r2", "da", "coverage")
#: Worst features per pair kept in a pass summary (the dashboard's drift heatmap).
SUMMARY_TOP_FEATURES = 5
_SEV_RANK = {"insufficient": -1, "ok": 0, "warning": 1, "critical": 2}


def _kl(c: dict[str, Any]) -> float:
    return float(c["kl"]) if c.get("kl") is not None else -1.0


def _drift_rank(row: dict[str, Any]) -> tuple[int, float]:
    return _SEV_RANK.get(row["severity"], -1), (_kl(row["worst"][0]) if row["worst"] else -1.0)


def summarize(report: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """The compact, bounded summary of a pass that is stored in ``monitor_runs`` and read
    by the service's gauges and dashboard: per pair the drift verdict of its worst-drifting
    served version with that version's :data:`SUMMARY_TOP_FEATURES` worst features (by
    severity, then KL); per (pair, version, window) live R², DA and coverage (each value,
    se, n_eff, interval), the test R² and the R²-drop verdict."""
    drift: dict[str, dict[str, Any]] = {}
    for rep in (report.get("drift") or {}).get("pairs", []):
        p = str(rep["pair"])
        cols = sorted(
            rep["columns"], key=lambda c: (_SEV_RANK.get(c["severity"], -1), _kl(c)), reverse=True
        )
        row = {
            "model_version": str(rep["model_version"]),
            "n": int(rep["n"]),
            "severity": rep["severity"],
            "over_warning": int(rep["over_warning"]),
            "over_critical": int(rep["over_critical"]),
            "n_features": len(rep["columns"]),
            "worst": [
                {"name": c["name"], "kl": c["kl"], "severity": c["severity"]}
                for c in cols[:SUMMARY_TOP_FEATURES]
            ],
        }
        prev = drift.get(p)
        if prev is None or _drift_rank(row) > _drift_rank(prev):
            drift[p] = row
    quality = []
    for r in (report.get("quality") or {}).get("rows", []):
        m = r["metrics"]
        quality.append(
            {
                "pair": r["pair"],
                "model_version": r["model_version"],
                "window": r["window"],
                "n": int(r["n"]),
                **{k: m.get(k) for k in SUMMARY_METRICS},
                "test_r2": (r.get("test") or {}).get("r2"),
                "r2_drop": r["r2_drop"],
            }
        )
    no_base = (report.get("drift") or {}).get("no_baseline", [])
    return {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "drift": drift,
        "no_baseline": [{k: str(v) for k, v in x.items()} for x in no_base],
        "quality": quality,
        "mature": report.get("mature"),
        "errors": list(report.get("errors", [])),
    }


class _StepClock:
    """Wall and CPU seconds (this process) of each step of a pass, for the report's
    ``timings`` (what a pass spends where; not a result)."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}
        self._w, self._c = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.steps[name] = {"wall_s": round(w - self._w, 4), "cpu_s": round(c - self._c, 4)}
        self._w, self._c = w, c


def drift_pass(
    state: Any,
    registry: Any,
    end: pd.Timestamp,
    window: pd.Timedelta = pd.Timedelta(hours=24),
    pair: str | None = None,
    workers: int = 1,
) -> tuple[dict[str, Any], list[Condition]]:
    """Drift of the captured model inputs of the last ``window`` of served bars against each
    (pair, version)'s frozen training baseline. Severity warning/critical raises a ``drift``
    alert per pair (the operator's retraining trigger reads critical ones); a version with
    no baseline is reported, not an error (``bqx monitor baseline PAIR VERSION`` makes one).

    ``workers`` > 1: the (pair, version) groups are computed in that many forked processes
    (:class:`DriftJob`); the report is the same.
    """
    return DriftJob(state, registry, end, window, pair, workers).result()


def parsed_baseline(
    registry: Any, pair: str, version: str, cache_dir: Path | None = None
) -> dict[str, Any]:
    """``parse_baseline(load_baseline(registry, pair, version))``, through an on-disk cache
    of the parsed form when ``cache_dir`` is given and the baseline is a local file.

    A baseline is frozen with its version, and parsing it (~0.8 MB of JSON for 70
    features, with the null calibration) was a tenth of a 28-pair pass's CPU; a pickle of
    the parsed columns loads ~7x faster. The cache key is the baseline file's path, size
    and mtime and the size and mtime of the modules that define the parsed form
    (``bqx.monitoring.baseline``, ``bqx.monitoring.drift``), so a rewritten baseline
    (``bqx monitor baseline``) or changed code is parsed afresh. Any cache failure falls
    back to parsing; a remote artifact store is not cached.
    """
    import bqx.monitoring.baseline as B
    import bqx.monitoring.drift as D

    if cache_dir is not None:
        try:
            info = registry.get(pair, version)
            src = B._local_artifact(f"{info.source}/{B.BASELINE_FILE}")
            if src is not None and src.exists():
                import hashlib
                import pickle

                parts = [str(src.resolve())]
                for f in (src, Path(B.__file__), Path(D.__file__)):
                    st = f.stat()
                    parts += [str(st.st_size), str(st.st_mtime_ns)]
                key = hashlib.sha1("|".join(parts).encode()).hexdigest()
                path = cache_dir / f"{key}.pkl"
                if path.exists():
                    try:
                        return cast(dict[str, Any], pickle.loads(path.read_bytes()))
                    except Exception:
                        log.warning("unreadable cached baseline %s: parsed again", path)
                base = B.parse_baseline(B.load_baseline(registry, pair, version))
                cache_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL))
                os.replace(tmp, path)  # atomic: a concurrent reader sees all or nothing
                return base
        except B.BaselineMissingError:
            raise
        except Exception:
            log.warning("baseline cache unavailable for %s v%s", pair, version, exc_info=True)
    return B.parse_baseline(B.load_baseline(registry, pair, version))


#: A drift worker that has not answered after this many seconds is killed and its groups
#: are computed in the pass's own process (a fork that inherited a held lock must not
#: stall monitoring).
WORKER_TIMEOUT_S = 300.0


#: The pass tests the relative-volatility column only with at least this many bars that
#: have enough of the other pairs captured (half the default window: the level test's own
#: minimum).
REL_MIN_BARS = 720


def _market_matrix(cap: pd.DataFrame) -> pd.DataFrame | None:
    """The captured rvol_60 as an (asof_ts x pair) frame, one value per pair and bar (a bar
    served by several versions of a pair has the same rvol_60 in each); None when nothing
    captured it."""
    from bqx.monitoring.drift import MARKET_VOL

    if MARKET_VOL not in cap.columns:
        return None
    m = cap[["asof_ts", "pair", MARKET_VOL]].dropna()
    if m.empty:
        return None
    m = m.drop_duplicates(["asof_ts", "pair"], keep="last")
    return m.pivot(index="asof_ts", columns="pair", values=MARKET_VOL)


class DriftJob:
    """The drift step of a pass, started early and collected later.

    The captured inputs are read here, in the calling process (one query, one float
    matrix). With ``workers`` > 1 (and ``os.fork``) the (pair, version) groups are then
    dealt round-robin to that many forked children, which inherit the matrix (no copy),
    load and parse their baselines, run :func:`bqx.monitoring.drift.drift_report` and send
    the reports back through a pipe; meanwhile the caller matures decisions and computes
    live quality. Each group's report depends on its own rows and baseline only, and the
    reports are assembled in the same sorted group order as in one process, so the result
    is the same. The children only read (the registry, baseline files); every write -
    alerts, the pass record - stays with the caller. A child that fails or does not answer
    in :data:`WORKER_TIMEOUT_S` has its groups computed here instead.
    """

    def __init__(
        self,
        state: Any,
        registry: Any,
        end: pd.Timestamp,
        window: pd.Timedelta = pd.Timedelta(hours=24),
        pair: str | None = None,
        workers: int = 1,
        listing: VersionListing | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.error: Exception | None = None
        self.groups: list[tuple[Any, Any, np.ndarray]] = []
        self.feats: list[str] = []
        self.X = np.empty((0, 0))
        self.children: list[tuple[int, int, list[int]]] = []  # (pid, read fd, group idx)
        #: per child: its peak RSS (MB) and CPU seconds, as it measured them
        self.worker_stats: list[dict[str, float]] = []
        #: the captured rvol_60 of every pair by as-of bar (asof_ts x pair), for the
        #: relative-volatility column (:data:`bqx.monitoring.drift.MARKET_REL`)
        self.mkt: pd.DataFrame | None = None
        self.asof = pd.DatetimeIndex([])
        try:
            cap = state.read_captures(pair, end - window, end)
            if cap.empty:
                return
            meta = {"decision_id", "pair", "asof_ts", "model_version"}
            self.feats = [c for c in cap.columns if c not in meta]
            # one matrix; each group's rows in asof_ts order
            self.X = cap[self.feats].to_numpy(np.float64)
            self.asof = pd.DatetimeIndex(cap["asof_ts"])
            if pair is None:
                self.mkt = _market_matrix(cap)
            elif hasattr(state, "read_capture_column"):
                # one pair: the relative column still needs the others' rvol_60 (that
                # column alone, not every captured input of every pair)
                from bqx.monitoring.drift import MARKET_VOL

                col = state.read_capture_column(MARKET_VOL, end - window, end)
                self.mkt = _market_matrix(col.rename(columns={"value": MARKET_VOL}))
            self.groups = [
                (*cast(tuple[Any, Any], k), pos)
                for k, pos in sorted(cap.groupby(["pair", "model_version"]).indices.items())
            ]
            del cap
            by = listing.get() if listing is not None else None
            if by is not None:  # the baselines' versions from one registry read
                self.registry = _Listed(registry, by)
            if workers > 1 and len(self.groups) > 1 and hasattr(os, "fork"):
                self._fork(min(workers, len(self.groups)))
        except Exception as e:
            self.error = e

    def _group(self, i: int) -> dict[str, Any] | None:
        """Drift report of group ``i``; None when its version has no baseline."""
        from bqx.monitoring.baseline import BaselineMissingError
        from bqx.monitoring.drift import MARKET_REL, MARKET_VOL, drift_report, relative_vol

        p, version, pos = self.groups[i]
        try:
            base = parsed_baseline(self.registry, str(p), str(version), self.cache_dir)
        except BaselineMissingError:
            return None
        Xg = self.X[pos]
        win = {c: Xg[:, j] for j, c in enumerate(self.feats) if c in base}
        mv = win.get(MARKET_VOL)
        if mv is not None:
            # the market column is captured only since it existed (rows captured before are
            # NaN): not a missing-value jump; test the captured stretch (none: absent)
            fin = np.flatnonzero(np.isfinite(mv))
            if len(fin):
                win[MARKET_VOL] = mv[fin[0] :]
            else:
                del win[MARKET_VOL]
        rb = base.get(MARKET_REL)
        if rb is not None and rb.centers and self.mkt is not None and MARKET_VOL in self.feats:
            # the pair over the market at each of its served bars: the others' captured
            # rvol_60 at the same bar, centred as at training (bars without enough of them
            # are left out, not counted as missing)
            own = Xg[:, self.feats.index(MARKET_VOL)]
            names = list(rb.centers)
            others = self.mkt.reindex(index=self.asof[pos], columns=names).to_numpy(np.float64)
            rel = relative_vol(own, others, np.array([rb.centers[n] for n in names]))
            rel = rel[np.isfinite(rel)]
            if len(rel) >= REL_MIN_BARS:
                win[MARKET_REL] = rel
        rep = drift_report(base, win)
        rep.update(pair=p, model_version=version, n=len(pos))
        return rep

    def _fork(self, k: int) -> None:
        import pickle
        import resource

        for w in range(k):
            idx = list(range(w, len(self.groups), k))
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: compute, send, exit without running the parent's exit
                code = 0
                try:
                    os.close(r)
                    try:
                        res: Any = ("ok", {i: self._group(i) for i in idx})
                    except Exception as e:
                        res = ("error", e)
                    ru = resource.getrusage(resource.RUSAGE_SELF)
                    stats = {
                        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
                        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
                    }
                    try:
                        data = pickle.dumps((*res, stats), protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as e:  # an unpicklable error: its text
                        data = pickle.dumps(("error", RuntimeError(f"{res[1]!r}: {e}"), stats))
                    with os.fdopen(wfd, "wb") as f:
                        f.write(data)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(wfd)
            self.children.append((pid, r, idx))

    def _collect(self) -> dict[int, dict[str, Any] | None]:
        import pickle
        import select
        import signal

        got: dict[int, dict[str, Any] | None] = {}
        error: Exception | None = None
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        for pid, fd, _idx in self.children:
            buf = bytearray()
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([fd], [], [], left)[0]:
                        log.warning("drift worker %d did not answer: killed", pid)
                        os.kill(pid, signal.SIGKILL)
                        break
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    buf += chunk
            finally:
                os.close(fd)
                os.waitpid(pid, 0)
            try:
                status, res, stats = pickle.loads(bytes(buf))
            except Exception:
                log.warning("drift worker %d failed: its groups are computed here", pid)
                continue
            self.worker_stats.append(stats)
            if status == "error":
                error = error or res
            else:
                got.update(res)
        self.children = []
        if error is not None:
            raise error
        return got

    def result(self) -> tuple[dict[str, Any], list[Condition]]:
        """The drift section of the report and the ``drift`` conditions (waits for the
        workers); raises what the step raised."""
        from bqx.monitoring.drift import MARKET_REL

        if self.error is not None:
            raise self.error
        got = self._collect() if self.children else {}
        out: dict[str, Any] = {"pairs": [], "no_baseline": []}
        conds: list[Condition] = []
        worst_by_pair: dict[str, tuple[str, str]] = {}
        for i, (p, version, _) in enumerate(self.groups):
            rep = got[i] if i in got else self._group(i)
            if rep is None:
                out["no_baseline"].append({"pair": p, "model_version": version})
                continue
            out["pairs"].append(rep)
            w = rep.get("worst") or {}
            msg = (
                f"{rep['over_critical']} critical / {rep['over_warning']} warning features "
                f"(v{version}); worst {w.get('name')} KL {w.get('kl')}"
            )
            joint = [
                f"{label} window z {t['z']} p {t['p']:.2g}"
                for label, t in (rep.get("pair_test") or {}).items()
                if t.get("significant")
            ]
            mk = [
                f"{'volatility relative to the market' if name == MARKET_REL else 'market'} "
                f"{name} level x{t['ratio']:.2f} of training (z {t['z']:.1f}, p {t['p']:.2g})"
                for name, t in (rep.get("market") or {}).items()
                if t.get("significant")
            ]
            if mk:
                msg += "; " + ", ".join(mk)
            if joint:
                # The pair-level test can escalate a pair whose features are each within
                # noise: say so, or the alert reads "0 critical" while being critical.
                msg += "; features drifted jointly (" + ", ".join(joint) + ")"
            prev = worst_by_pair.get(str(p))
            rank = {"ok": 0, "warning": 1, "critical": 2}
            if prev is None or rank.get(rep["severity"], 0) > rank.get(prev[0], 0):
                worst_by_pair[str(p)] = (rep["severity"], msg)
        for wp, (sev, msg) in worst_by_pair.items():
            firing = sev in ("warning", "critical")
            conds.append(
                Condition("drift", firing, msg, sev if firing else "warning", wp, f"drift:{wp}")
            )
        return out, conds


def run_pass(
    state: Any,
    store: Any = None,
    registry: Any = None,
    *,
    notifiers: list[Notifier] | None = None,
    now: Any = None,
    lookback: pd.Timedelta = pd.Timedelta(days=8),
    retention: pd.Timedelta | None = pd.Timedelta(days=30),
    monitor: Any = None,
    ops_now: Any = None,
    baseline_cache: Path | None = None,
) -> dict[str, Any]:
    """Mature pending decisions, compute live quality per (pair, version), input drift,
    the operational rules (5xx rate, p99 latency: :mod:`bqx.monitoring.opsrules`),
    evaluate alert rules and deliver notices; record the pass (``monitor_runs``, what
    ``bqx monitor status`` shows). Returns a JSON-ready report.

    ``monitor``: :class:`bqx.config.MonitorSettings` (defaults when None). ``now`` ends
    the live windows of quality and drift (may be a replayed past); the operational rules
    look at the service's recent requests, so they end at ``ops_now`` (default: the clock).
    ``baseline_cache``: a directory for parsed baselines (:func:`parsed_baseline`; None:
    parse every pass). ``monitor.workers``: processes for the drift step (:class:`DriftJob`).
    """
    from bqx.config import MonitorSettings

    cfg = monitor if monitor is not None else MonitorSettings()
    t0 = time.perf_counter()
    errors: list[str] = []
    report: dict[str, Any] = {"mature": None, "quality": {"rows": []}, "alerts": None}
    conds: list[Condition] = []
    clk = _StepClock()
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    # drift needs the captured inputs only (not the matured targets): started first, its
    # workers run while this process matures decisions and computes live quality
    listing = VersionListing(registry) if registry is not None else None
    job = (
        DriftJob(
            state, registry, end, workers=cfg.workers, listing=listing, cache_dir=baseline_cache
        )
        if registry is not None and hasattr(state, "read_captures")
        else None
    )
    clk.lap("drift_start")
    if store is not None:
        try:
            report["mature"] = mature(state, store).as_dict()
        except Exception as e:
            errors.append(f"mature: {type(e).__name__}: {e}")
    clk.lap("mature")
    try:
        dec = state.read_decisions(start=end - lookback, by="asof_ts", columns=QUALITY_COLUMNS)
        if not dec.empty:
            pairs = sorted(dec["pair"].unique())
            tm_all = (
                test_metrics_by_version(registry, pairs, listing.get())
                if registry is not None and listing is not None
                else {}
            )
            tm = {v: m for p in tm_all.values() for v, m in p.items()}
            rows = []
            for p, g in dec.groupby("pair"):
                rows += quality_report(g, now=end, test_metrics=tm_all.get(str(p), tm))["rows"]
            report["quality"] = {"rows": rows}
            conds += quality_conditions(report["quality"])
    except Exception as e:
        errors.append(f"quality: {type(e).__name__}: {e}")
    clk.lap("quality")
    if job is not None:
        try:
            report["drift"], dconds = job.result()
            conds += dconds
        except Exception as e:
            errors.append(f"drift: {type(e).__name__}: {e}")
        clk.lap("drift_collect")
    if hasattr(state, "read_service_stats"):
        from bqx.monitoring.opsrules import ops_conditions

        clock = pd.Timestamp(ops_now) if ops_now is not None else pd.Timestamp.now(tz="UTC")
        try:
            report["ops"], oconds = ops_conditions(state, cfg, clock)
            conds += oconds
            state.purge_service_stats(clock - pd.Timedelta(hours=cfg.stats_retention_h))
        except Exception as e:
            errors.append(f"ops: {type(e).__name__}: {e}")
    if retention is not None and hasattr(state, "purge_captures"):
        try:
            report["purged_captures"] = state.purge_captures(end - retention)
        except Exception as e:
            errors.append(f"purge: {type(e).__name__}: {e}")
    conds.append(
        Condition("monitoring_failure", bool(errors), "; ".join(errors) or "ok", "critical")
    )
    from datetime import timedelta

    from bqx.monitoring.notifiers import notifiers_from_settings

    am = AlertManager(
        state,
        notifiers if notifiers is not None else notifiers_from_settings(cfg),
        repeat_interval=timedelta(hours=cfg.repeat_interval_h),
    )
    report["alerts"] = am.evaluate(conds, at=end)
    clk.lap("ops_purge_alerts")
    report["errors"] = errors
    report["seconds"] = time.perf_counter() - t0
    report["timings"] = {
        "steps": clk.steps,
        "drift_workers": job.worker_stats if job is not None else [],
    }
    if hasattr(state, "record_monitor_run"):  # what the service's gauges and dashboard read
        try:
            import json

            from bqx.jsonutil import dumps
            from bqx.state.monitor_runs import RUN_RETENTION_DAYS

            summary = json.loads(dumps(summarize(report, end), indent=None))
            report["run_id"] = state.record_monitor_run(
                summary, as_of=end, seconds=report["seconds"], errors=len(errors)
            )
            state.purge_monitor_runs(
                pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=RUN_RETENTION_DAYS)
            )
        except Exception:
            log.warning("could not record the monitoring pass summary", exc_info=True)
    return report
