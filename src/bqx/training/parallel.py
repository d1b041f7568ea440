"""Train many pairs in parallel: a local process pool by default, Ray when asked.

Workers receive a pair name and the settings, read their own features from the feature store
(no multi-GB frames cross process boundaries) and return the fitted artifact. The parent
process alone talks to MLflow (registration is serialised: SQLite-backed MLflow fails with
"database is locked" under concurrent writers). A failing pair is reported and does not stop
the others.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bqx.config import Settings, load_settings
from bqx.errors import BqxError
from bqx.universe import normalize_pairs


@dataclass
class TrainOutcome:
    pair: str
    ok: bool
    result: Any = None  # TrainResult
    error: str | None = None
    version: str | None = None
    promoted: bool = False
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        if not self.ok or self.result is None:
            return {
                "pair": self.pair,
                "ok": False,
                "error": self.error,
                "seconds": round(self.seconds, 1),
            }
        d = self.result.summary()
        d.update({"ok": True, "version": self.version, "promoted": self.promoted})
        return d


def _work(pair: str, settings_data: dict[str, Any], model: str, params: dict[str, Any] | None,
          start: Any, end: Any, n_jobs: int) -> tuple[str, Any, str | None, float]:  # fmt: skip
    """Run in a worker process: returns (pair, TrainResult | None, error, seconds)."""
    t0 = time.perf_counter()
    try:
        from bqx.training.train import train_pair

        s = Settings.model_validate(settings_data)
        res = train_pair(pair, s, model=model, params=params, start=start, end=end, n_jobs=n_jobs)
        return pair, res, None, time.perf_counter() - t0
    except BqxError as e:
        return pair, None, str(e), time.perf_counter() - t0
    except Exception as e:  # report, do not crash the pool
        tb = traceback.format_exc(limit=6)
        return pair, None, f"{type(e).__name__}: {e}\n{tb}", time.perf_counter() - t0


def train_many(
    pairs: Sequence[str] | str | None,
    settings: Settings | None = None,
    *,
    model: str | None = None,
    params: dict[str, dict[str, Any] | None] | None = None,
    jobs: int | None = None,
    backend: str = "local",
    start: Any = None,
    end: Any = None,
    register: bool = True,
    promote: bool = False,
    on_done: Callable[[TrainOutcome, int, int], None] | None = None,
) -> list[TrainOutcome]:
    """Train ``pairs`` with ``jobs`` parallel workers; register (and optionally promote
    approved versions) from this process as results arrive."""
    s = settings or load_settings()
    plist = normalize_pairs(pairs)
    model = model or s.train.model
    jobs = max(1, min(jobs or s.train.jobs, len(plist)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    data = s.model_dump(mode="json")
    data["home"] = str(s.home.resolve())
    params = params or {}
    outcomes: list[TrainOutcome] = []
    reg = None
    if register:
        from bqx.registry import Registry

        reg = Registry(s)

    def handle(pair: str, res: Any, err: str | None, secs: float) -> None:
        out = TrainOutcome(pair, res is not None, res, err, seconds=secs)
        if res is not None and reg is not None:
            try:
                out.version = reg.log_and_register(res)
                if promote and res.approved:
                    reg.promote(
                        pair, out.version, actor="bqx train --promote", reason=res.approval_reason
                    )
                    out.promoted = True
            except Exception as e:  # registration failure is a failure of this pair only
                out.ok = False
                out.error = f"registration failed: {type(e).__name__}: {e}"
        outcomes.append(out)
        if on_done:
            on_done(out, len(outcomes), len(plist))

    args = [(p, data, model, params.get(p), start, end, threads) for p in plist]
    if backend == "local":
        if jobs == 1:
            for a in args:
                handle(*_work(*a))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("spawn")  # forked BLAS/OpenMP thread pools can deadlock
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
                futs = [ex.submit(_work, *a) for a in args]
                for f in as_completed(futs):
                    handle(*f.result())
    elif backend == "ray":
        import ray

        started = False
        if not ray.is_initialized():
            ray.init(
                num_cpus=jobs,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
            started = True
        try:
            remote = ray.remote(num_cpus=1)(_work)
            pending = [remote.remote(*a) for a in args]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                handle(*ray.get(done[0]))
        finally:
            if started:
                ray.shutdown()
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    order = {p: i for i, p in enumerate(plist)}
    return sorted(outcomes, key=lambda o: order[o.pair])
