"""Issue 18 item 9: under CI=true, a missing browser or peer backtester fails its test instead
of skipping silently (on a laptop it still skips)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pytest(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_missing_chromium_fails_in_ci_and_skips_on_a_laptop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(tmp_path)  # no browser on PATH (python is called by absolute path)
    t = "tests/backtest/test_report.py::test_renders_in_headless_chromium"
    ci = _pytest(t, {**env, "CI": "true"})
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "Chromium: no Chromium on PATH (CI=true" in ci.stdout
    laptop = _pytest(t, env)
    assert laptop.returncode == 0 and "1 skipped" in laptop.stdout, laptop.stdout


def test_missing_backtesting_package_fails_in_ci(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # hide the installed package: imports of it raise ModuleNotFoundError, as when absent
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'backtesting':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), env.get("PYTHONPATH", "")])
    ci = _pytest("tests/backtest/test_peer.py", {**env, "CI": "true"})
    assert ci.returncode != 0 and "skipped" not in ci.stdout, ci.stdout + ci.stderr
    assert "package 'backtesting': not importable" in ci.stdout + ci.stderr
