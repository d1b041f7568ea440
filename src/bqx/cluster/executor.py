"""One executor for every per-pair task: training, walk-forward windows, tuning.

* ``backend="local"``: a spawn process pool on this machine (forked BLAS/OpenMP thread pools
  can deadlock), or inline when ``jobs == 1``.
* ``backend="ray"`` without an address: a private local Ray with ``jobs`` CPUs (as before).
* ``backend="ray"`` with ``train.ray_address`` (``BQX_TRAIN__RAY_ADDRESS``; ``RAY_ADDRESS`` is
  honoured too): connect to an existing cluster, never passing ``num_cpus`` (Ray refuses it
  when connecting). Tasks may then run on machines that do not have the driver's project
  home, so each task is *localised* on its node before it runs: the settings it receives get
  a node-local scratch home (``BQX_WORKER_HOME`` on the node, default
  ``$TMPDIR/bqx-worker-<uid>/<store key>``) and the pair's feature store is built there from
  the shared bar store (PostgreSQL) — incrementally, so later tasks of the same pair on the
  same node only re-check fingerprints. Why build rather than ship Parquet: measured on
  2026-11-29 (100 days of 15-min bars, 28 pairs) a first build of one pair on a worker cost
  0.8-1.8 s and a re-check far less, against 10+ s of training per pair-task; it needs no
  second shared storage system, and the result is bit-identical to the driver's store
  because it is the same code on the same bars (docs/cluster.md).

Results (fitted artifacts, prediction frames) travel back to the driver, which alone writes
to MLflow and the state database. A task that fails is reported as a :class:`Done` with an
``error``; it never stops the others.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bqx.config import Settings
from bqx.errors import BqxError, ConfigError


class ClusterError(BqxError):
    """The Ray cluster (or another shared service the cluster needs) is unreachable."""

    exit_code = 3


#: Where a setting can come from, for error messages.
RAY_SETTING = "train.ray_address (BQX_TRAIN__RAY_ADDRESS or RAY_ADDRESS)"


def ray_address(settings: Settings) -> str | None:
    """The Ray cluster to connect to: ``train.ray_address``, else ``RAY_ADDRESS``, else None
    (start a private local Ray)."""
    addr = getattr(settings.train, "ray_address", None) or os.environ.get("RAY_ADDRESS") or None
    return addr.strip() if addr else None


def check_tcp(setting: str, url_or_addr: str, *, default_port: int, timeout: float = 3.0) -> None:
    """Fail fast, naming the setting and the address, when nothing listens there (Ray, MLflow
    and psycopg would otherwise retry for a minute or print a traceback)."""
    u = urlsplit(url_or_addr if "://" in url_or_addr else f"tcp://{url_or_addr}")
    host, port = u.hostname or "127.0.0.1", u.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as e:
        raise ClusterError(
            f"{setting} = {url_or_addr}: cannot reach {host}:{port} ({e.strerror or e})",
            hint="start that service, or fix the setting (see docs/cluster.md)",
        ) from None


@dataclass(frozen=True)
class Call:
    """One task: ``fn(*args)`` for ``pair``; ``args[settings_at]`` is the settings dict
    (``Settings.model_dump(mode="json")``) that is localised on a remote node."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    pair: str
    settings_at: int = 1
    #: build the pair's feature store on the node first (tasks that read bars directly,
    #: like batch prediction, only need the node-local home)
    features: bool = True


@dataclass
class Done:
    """A finished task: ``value`` is ``fn``'s return value, or None with ``error`` set."""

    index: int
    value: Any
    error: str | None
    seconds: float
    node: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def worker_home(settings_data: dict[str, Any]) -> Path:
    """The node-local scratch home of a remote task (one per store, interval and target)."""
    base = os.environ.get("BQX_WORKER_HOME")
    root = Path(base) if base else Path(tempfile.gettempdir()) / f"bqx-worker-{_user()}"
    key = "|".join(
        str(settings_data.get(k))
        for k in ("store_url", "bar_interval", "horizon", "target", "max_ffill_bars")
    )
    return root / hashlib.sha256(key.encode()).hexdigest()[:12]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database
        return str(os.getuid())


def localise(pair: str, settings_data: dict[str, Any], features: bool = True) -> dict[str, Any]:
    """Runs on the remote node: a copy of the settings with a node-local home whose feature
    store holds ``pair``, built from the shared bar store under a node-wide lock (the
    manifest is one file per store)."""
    import fcntl

    from bqx.data.store import open_store
    from bqx.features.store import FeatureStore

    data = dict(settings_data)
    home = worker_home(data)
    data["home"] = str(home)
    s = Settings.model_validate(data)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    if not features:
        return data
    with open(s.features_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = open_store(settings=s)
        try:
            FeatureStore(
                s.features_dir, horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
            ).build(store, [pair])
        finally:
            store.close()
    return data


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - ray missing or not in a Ray worker
        pass
    return f"local:{socket.gethostname()}"


def _invoke(call: Call, remote: bool) -> tuple[Any, str | None, float, str, dict[str, Any]]:
    """Runs in the worker: (value, error, seconds, node id, info)."""
    t0 = time.perf_counter()
    info: dict[str, Any] = {"cwd": os.getcwd(), "pid": os.getpid()}
    try:
        args = list(call.args)
        if remote:
            t1 = time.perf_counter()
            # evidence for tests and operators: can this node see the driver's project home?
            info["saw_driver_home"] = Path(str(args[call.settings_at].get("home"))).exists()
            args[call.settings_at] = localise(call.pair, args[call.settings_at], call.features)
            info["home"] = args[call.settings_at]["home"]
            info["localise_s"] = time.perf_counter() - t1
        value = call.fn(*args)
        return value, None, time.perf_counter() - t0, _node_id(), info
    except BqxError as e:
        return None, str(e), time.perf_counter() - t0, _node_id(), info
    except Exception as e:  # report, do not crash the pool
        tb = traceback.format_exc(limit=6)
        return None, f"{type(e).__name__}: {e}\n{tb}", time.perf_counter() - t0, _node_id(), info


#: Thread-count variables of the native libraries the tasks use (OpenMP: LightGBM, XGBoost;
#: OpenBLAS / MKL: numpy, scikit-learn).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_threads(n: int) -> None:
    """Worker initializer of the local process pool: at most ``n`` native threads per library
    in this worker (unless the user set the variable). With the libraries' default - a thread
    per core in every worker - ``jobs`` workers on ``jobs`` cores run jobs x cores threads,
    and OpenMP's idle threads spin: the demo's 2-worker training step took 107 vs 69 CPU-s
    (docs/performance.md, "Demo"). The variables cover libraries loaded later in the task
    (LightGBM's OpenMP); threadpoolctl those already loaded."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(n))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(os.environ["OMP_NUM_THREADS"]))
    except (ImportError, ValueError):  # no threadpoolctl, or a user value that is no integer
        pass


class Executor:
    """Run :class:`Call` s and yield :class:`Done` s as they finish.

    Use as a context manager: entering connects to (or starts) Ray for ``backend="ray"``;
    leaving shuts down only a Ray this executor started.
    """

    def __init__(self, settings: Settings, backend: str = "local", jobs: int | None = None):
        if backend not in ("local", "ray"):
            raise ConfigError(f"unknown backend {backend!r}; use 'local' or 'ray'")
        self.settings = settings
        self.backend = backend
        self.jobs = max(1, jobs or settings.train.jobs)
        self.address = ray_address(settings) if backend == "ray" else None
        #: True when tasks may run on other machines (an existing Ray cluster).
        self.remote = self.address is not None
        self._started = False

    # ---- set-up ------------------------------------------------------------------------
    def threads_per_task(self, n_tasks: int) -> int:
        """BLAS/estimator threads per task: one CPU per Ray task on a cluster; the local
        machine's cores shared by the concurrent tasks otherwise."""
        if self.remote:
            return 1
        return max(1, (os.cpu_count() or 1) // max(1, min(self.jobs, n_tasks)))

    def check_shared(self) -> None:
        """A remote task can reach only shared services: refuse a bar store on local disk."""
        if not self.remote:
            return
        url = self.settings.resolved_store_url
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"store_url = {url}: a DuckDB file on the driver's disk; tasks on other Ray "
                f"nodes ({RAY_SETTING} = {self.address}) cannot read it",
                hint="put the bars on PostgreSQL (BQX_STORE_URL=postgresql://...) "
                "or train with --backend local",
            )
        check_tcp("store_url", url, default_port=5432)

    def __enter__(self) -> Executor:
        if self.backend == "ray":
            self.check_shared()
            self._connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        if self.address is None:
            # RAY_ADDRESS unset here, so ray.init starts a private local instance
            ray.init(
                num_cpus=self.jobs,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
            self._started = True
            return
        if self.address != "auto" and not self.address.startswith("ray://"):
            check_tcp(RAY_SETTING, self.address, default_port=6379)
        try:
            ray.init(address=self.address, log_to_driver=False, ignore_reinit_error=True)
        except Exception as e:
            raise ClusterError(
                f"{RAY_SETTING} = {self.address}: cannot connect to the Ray cluster "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                hint="`ray status --address ADDRESS` on the head node; or unset it for a local Ray",
            ) from None
        self._started = True  # disconnects this driver only; the cluster keeps running

    # ---- running -----------------------------------------------------------------------
    def map(self, calls: Sequence[Call]) -> Iterator[Done]:
        """Run every call; yield results in completion order."""
        if not calls:
            return
        if self.backend == "ray":
            yield from self._map_ray(calls)
        elif min(self.jobs, len(calls)) == 1:
            for i, c in enumerate(calls):
                yield Done(i, *_unpack(_invoke(c, False)))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("spawn")
            workers = min(self.jobs, len(calls))
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_limit_threads,
                initargs=(self.threads_per_task(len(calls)),),
            ) as ex:
                futs = {ex.submit(_invoke, c, False): i for i, c in enumerate(calls)}
                for f in as_completed(futs):
                    yield Done(futs[f], *_unpack(f.result()))

    def _map_ray(self, calls: Sequence[Call]) -> Iterator[Done]:
        import ray

        remote_fn = ray.remote(num_cpus=1, max_retries=0)(_invoke)
        refs = {remote_fn.remote(c, self.remote): i for i, c in enumerate(calls)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            try:
                yield Done(i, *_unpack(ray.get(done[0])))
            except Exception as e:  # the worker died (OOM, node lost): this task only
                yield Done(i, None, f"{type(e).__name__}: {str(e)[:500]}", 0.0, "", {})


def _unpack(
    r: tuple[Any, str | None, float, str, dict[str, Any]],
) -> tuple[Any, str | None, float, str, dict[str, Any]]:
    return r
