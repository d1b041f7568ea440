"""Warm-ups on a cold kernel cache take turns (``bqx serve --workers N`` after a deploy):
the first process compiles, the others wait on a lock file and then only load the cached
kernels, instead of each starting its own compile processes. The lock dies with its holder
(``kill -9``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bqx.features import _jit, pipeline

HOLD = (
    "import sys, time, pathlib\n"
    "from bqx.features.pipeline import _exclusive\n"
    "lock, marker, secs = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])\n"
    "with _exclusive(lock):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(secs)\n"
    "    if marker != '-':\n"
    "        pathlib.Path(marker).touch()\n"
)


@pytest.fixture
def cold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A cold marker in ``tmp_path`` (the kernels themselves stay in the suite's cache) and
    the compile step replaced by a recorder (the test is about who compiles, not how)."""
    if not _jit.enabled():
        pytest.skip("BQX_JIT=0: no kernels, no warm-up lock")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    calls: list[str] = []
    monkeypatch.setattr(pipeline, "_compile_in_two_processes", lambda pair: calls.append(pair))
    marker = _jit.warm_marker()
    assert marker.parent == tmp_path and not marker.exists()
    return marker, calls


def _holder(lock: Path, marker: str, secs: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    pr = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock), marker, str(secs)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert pr.stdout is not None and pr.stdout.readline().strip() == "locked"
    return pr


def _lock_of(marker: Path) -> Path:
    return marker.with_name(marker.name + ".lock")


def test_a_cold_warm_up_compiles_once_and_leaves_the_marker(cold):
    marker, calls = cold
    pipeline.warm_up()
    assert calls == ["EURUSD"] and marker.exists()
    pipeline.warm_up()  # warm now: no lock, no compile
    assert calls == ["EURUSD"]


def test_a_second_warm_up_waits_for_the_first_and_does_not_compile_again(cold):
    """Another process holds the lock while it "compiles" (1.5 s) and then leaves the
    marker: this warm-up waits for it and only loads."""
    marker, calls = cold
    pr = _holder(_lock_of(marker), str(marker), 1.5)
    t0 = time.perf_counter()
    pipeline.warm_up()
    waited = time.perf_counter() - t0
    assert pr.wait(timeout=30) == 0
    assert waited > 1.0, waited  # it did wait for the holder
    assert calls == []  # the holder's warm-up counts: no second compile
    assert marker.exists()


def test_a_killed_holder_releases_the_lock(cold):
    """The holder dies mid-compile (``kill -9``, no marker): the waiting warm-up goes on
    and compiles itself."""
    marker, calls = cold
    pr = _holder(_lock_of(marker), "-", 60.0)
    t0 = time.perf_counter()
    killer = subprocess.Popen(
        [sys.executable, "-c", f"import os, time; time.sleep(1.0); os.kill({pr.pid}, 9)"]
    )
    pipeline.warm_up()
    waited = time.perf_counter() - t0
    assert 0.8 < waited < 30, waited  # waited for the holder, not for its 60 s
    assert killer.wait(timeout=10) == 0
    assert pr.wait(timeout=10) == -signal.SIGKILL
    assert calls == ["EURUSD"] and marker.exists()
