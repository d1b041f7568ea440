"""Batch prediction split over workers (a process pool or Ray nodes).

Every task runs :func:`bqx.serving.batch.predict_batch` for a group of pairs: it reads the
bars of all pairs from the shared store (cross features need them) and loads the production
models through the registry (the MLflow server on a cluster), so the groups are few and large
(one per worker) rather than one per pair. The driver concatenates the frames.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bqx.cluster.executor import Call, Executor
from bqx.config import Settings
from bqx.errors import BqxError, NoDataError
from bqx.serving.batch import BATCH_COLUMNS, BatchResult
from bqx.universe import normalize_pairs


def _part(pairs: list[str], data: dict[str, Any], start: Any, end: Any) -> BatchResult:
    from bqx.serving.batch import predict_batch

    return predict_batch(pairs, start, end, Settings.model_validate(data))


def predict_batch_distributed(
    pairs: Any, start: Any, end: Any, settings: Settings, *, backend: str = "local",
    jobs: int = 2,
) -> BatchResult:  # fmt: skip
    """:func:`~bqx.serving.batch.predict_batch` over ``jobs`` groups of pairs in parallel."""
    plist = normalize_pairs(pairs)
    n = max(1, min(jobs, len(plist)))
    groups = [plist[i::n] for i in range(n)]
    data = settings.model_dump(mode="json")
    data["home"] = str(settings.home.resolve())
    frames: list[pd.DataFrame] = []
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    errors: list[str] = []
    with Executor(settings, backend, n) as ex:
        calls = [Call(_part, (g, data, start, end), g[0], features=False) for g in groups]
        for d in ex.map(calls):
            if d.value is None:
                if d.error and "production model" in d.error:
                    skipped.update({p: "no production model" for p in groups[d.index]})
                else:
                    errors.append(d.error or "unknown error")
                continue
            frames.append(d.value.frame)
            skipped.update(d.value.skipped)
            for k, v in d.value.seconds.items():
                seconds[k] = max(seconds.get(k, 0.0), v)  # wall: the slowest group
    if errors:
        raise BqxError("batch prediction failed: " + "; ".join(e.splitlines()[0] for e in errors))
    if not frames:
        raise NoDataError("none of the requested pairs has a production model")
    out = pd.concat(frames, ignore_index=True)[list(BATCH_COLUMNS)]
    out = out.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)
    return BatchResult(out, skipped, seconds)
