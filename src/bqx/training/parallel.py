"""Train many pairs in parallel: a local process pool by default, Ray when asked
(a private local Ray, or an existing cluster: see :mod:`bqx.cluster.executor`).

Workers receive a pair name and the settings, read their own features from the feature store
(no multi-GB frames cross process boundaries) and return the fitted artifact. The parent
process alone talks to MLflow (registration is serialised: SQLite-backed MLflow fails with
"database is locked" under concurrent writers). A failing pair is reported and does not stop
the others.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    #: Ray node id (or ``local:<host>``) the pair trained on, and the task's cwd/home.
    node: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        if not self.ok or self.result is None:
            return {
                "pair": self.pair,
                "ok": False,
                "error": self.error,
                "seconds": round(self.seconds, 1),
                **({"node": self.node} if self.node else {}),
            }
        d = self.result.summary()
        d.update({"ok": True, "version": self.version, "promoted": self.promoted})
        if self.node:
            d["node"] = self.node
        if "home" in self.info:  # a task localised on a cluster node
            d["worker_home"] = self.info["home"]
            d["saw_driver_home"] = self.info.get("saw_driver_home")
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
    data = s.model_dump(mode="json")
    data["home"] = str(s.home.resolve())
    params = params or {}
    outcomes: list[TrainOutcome] = []
    reg = None
    if register:
        from bqx.cluster.checks import check_tracking
        from bqx.registry import Registry

        check_tracking(s)  # an unreachable MLflow server fails now, before any training
        reg = Registry(s)

    def handle(pair: str, res: Any, err: str | None, secs: float, d: Any = None) -> None:
        out = TrainOutcome(pair, res is not None, res, err, seconds=secs)
        if d is not None:
            out.node, out.info = d.node, d.info
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

    from bqx.cluster.executor import Call, Executor

    with Executor(s, backend, jobs) as ex:
        threads = ex.threads_per_task(len(plist))
        calls = [
            Call(_work, (p, data, model, params.get(p), start, end, threads), p) for p in plist
        ]
        for d in ex.map(calls):
            if d.value is None:  # the task could not even start (e.g. its node lost the store)
                handle(plist[d.index], None, d.error, d.seconds, d)
            else:
                pair, res, err, secs = d.value
                handle(pair, res, err, secs, d)
    order = {p: i for i, p in enumerate(plist)}
    return sorted(outcomes, key=lambda o: order[o.pair])
