"""Shared fixtures. Integration tests talk to real servers; they may skip on a laptop
without the server, never in CI (CI=true turns a missing server into a failure)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

PG_URL = os.environ.get("BQX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# the regime HMM fitted with every `train_pair` (bqx.decision.regime): one small EM restart
# in the suite (also in `bqx` subprocesses); its own tests fit it explicitly
os.environ.setdefault("BQX_REGIME__RESTARTS", "1")
os.environ.setdefault("BQX_REGIME__FIT_ROWS", "1000")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as con:
            con.execute("SELECT 1")
        return None
    except Exception as e:  # pragma: no cover - depends on the machine
        return str(e)


REDIS_URL = os.environ.get("BQX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_reachable() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        return None
    except Exception as e:  # pragma: no cover - depends on the machine
        return str(e)


def require_server(name: str, problem: str | None) -> None:
    """Skip (laptop) or fail (CI) when a server the test needs is not reachable."""
    if problem is None:
        return
    msg = f"{name} not reachable: {problem}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: integration tests must not skip)")
    pytest.skip(msg)


def require_tool(name: str, problem: str | None) -> None:
    """Skip (laptop) or fail (CI) when a tool or optional package a test needs is missing:
    in CI a missing browser or peer library must not turn its test into a silent skip."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{name}: {problem} (CI=true: this test must not skip)", pytrace=False)
    pytest.skip(f"{name}: {problem}", allow_module_level=True)


def import_or_fail_in_ci(module: str) -> object:
    """``pytest.importorskip`` that fails instead of skipping when CI=true."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        require_tool(f"package {module!r}", f"not importable ({e})")
        raise  # not reached: require_tool skipped or failed


def pytest_configure(config: pytest.Config) -> None:
    """Compile the online path's numba kernels into their disk cache once, before any test
    (in the xdist controller, before the workers start; ~30 s on a new source tree, ~1 s
    when cached): otherwise the first test to touch them pays the compile inside its own
    time limits - a `bqx serve` subprocess warming them at start-up would answer /readyz
    tens of seconds late, and two workers would compile the same kernels at once."""
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    import time

    t0 = time.perf_counter()
    from bqx.features.pipeline import warm_up
    from bqx.training import fastpredict

    warm_up()
    fastpredict.warm_up()
    config.stash[_WARM_KEY] = time.perf_counter() - t0


_WARM_KEY = pytest.StashKey[float]()


def pytest_report_header(config: pytest.Config) -> str | None:
    t = config.stash.get(_WARM_KEY, None)
    return None if t is None else f"bqx: feature kernels compiled or loaded in {t:.1f} s"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own project home and ignores the developer's environment."""
    for k in list(os.environ):
        if k.startswith("BQX_") and k not in ("BQX_TEST_PG_URL", "BQX_TEST_REDIS_URL"):
            monkeypatch.delenv(k, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("BQX_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def pg_url() -> str:
    require_server("PostgreSQL", _pg_reachable())
    return PG_URL


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", _redis_reachable())
    return REDIS_URL


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """The same tests run against both backends."""
    from bqx.data.store import DuckDBStore, PostgresStore

    interval = timedelta(minutes=1)
    if request.param == "duckdb":
        s = DuckDBStore(tmp_path / "bars.duckdb", interval)
        yield s
        s.close()
    else:
        require_server("PostgreSQL", _pg_reachable())
        s = PostgresStore(PG_URL, interval, table=f"bars_t{uuid.uuid4().hex[:10]}")
        try:
            yield s
        finally:
            s.drop()
            s.close()


@pytest.fixture
def temp_pg():
    """A throw-away PostgreSQL server on a free port (fault tests stop/kill/freeze it)."""
    from bqx.infra.pgtemp import TempPostgres

    try:
        pg = TempPostgres()
        pg.start()
        pg.wait_ready()
    except Exception as e:  # pragma: no cover - depends on the machine
        require_server("PostgreSQL binaries (initdb/pg_ctl)", str(e))
        raise
    try:
        yield pg
    finally:
        pg.destroy()
