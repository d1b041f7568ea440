"""`make demo` on a fresh clone, timed per step (issue 15 item 1: "make demo time on a fresh
clone, per step").

Clones ``--repo`` into a temporary directory, checks out ``--branch``, runs ``make demo`` there
(the install included: the clone has no .venv) with a fresh ``BQX_HOME`` and ``--port``, time-
stamps every output line as it arrives, and records: the install (start to the demo's first
step), each step as the demo prints it, the whole wall time, the CPU seconds of the children
(``getrusage``), the load average every 10 s, and how many pairs passed the approval rule on
their own. The demo's server is stopped afterwards.

Usage: ``python benchmarks/bench_demo_run.py --repo /path/to/repo --branch demo28
[--port 18790] [--out benchmarks/results/demo_fresh_clone.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import signal
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STEP_END = re.compile(r"^   \((?P<step>.+): (?P<s>\d+) s; demo so far (?P<t>\d+) s\)$")
PASSED = re.compile(r"^(?P<n>\d+) of (?P<m>\d+) pairs passed the approval rule on their own")
NOT_APPROVED = re.compile(r"^NOT approved \(.*\): (?P<pairs>.+)$")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--branch", required=True)
    ap.add_argument("--port", type=int, default=18790)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the clone (default: delete)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bqx-demo-clone-"))
    clone = work / "repo"
    home = work / "home"
    loads: list[dict[str, Any]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            loads.append({"t": round(time.time() - t0, 1), "load1": os.getloadavg()[0]})
            stop.wait(10)

    t0 = time.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    threading.Thread(target=sample, daemon=True).start()
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", args.branch], check=True)
    commit = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    t_clone = time.time() - t0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BQX_HOME=str(home), BQX_SERVE__PORT=str(args.port))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_make = time.time()
    proc = subprocess.Popen(
        ["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )  # fmt: skip
    first_step: float | None = None
    steps: list[dict[str, Any]] = []
    passed: dict[str, Any] = {}
    log = (work / "make_demo.log").open("w")
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.time() - t_make
        log.write(f"[{now:7.1f}] {line}")
        print(f"[{now:7.1f}] {line}", end="", flush=True)
        s = line.rstrip("\n")
        if first_step is None and s.startswith("== 1/"):
            first_step = now
        if m := STEP_END.match(s):
            steps.append({"step": m["step"], "seconds": int(m["s"]), "demo_so_far": int(m["t"])})
        if m := PASSED.match(s):
            passed.update(passed=int(m["n"]), pairs=int(m["m"]))
        if m := NOT_APPROVED.match(s):
            passed["not_approved"] = [p.strip() for p in m["pairs"].split(",")]
    rc = proc.wait()
    t_total = time.time() - t_make
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    # stop the API server the demo left running
    pid_file = home / "serve.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    load_vals = [x["load1"] for x in loads]
    out = {
        "benchmark": "demo_fresh_clone",
        "command": f"git clone {args.repo} <tmp> && git checkout {args.branch} && "
        "BQX_HOME=<fresh> BQX_SERVE__PORT=<free> make demo (install included)",
        "commit": commit,
        "machine": {
            "date_utc": started,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "returncode": rc,
        "clone_s": round(t_clone, 1),
        "install_s": round(first_step, 1) if first_step is not None else None,
        "steps": steps,
        "demo_s": steps[-1]["demo_so_far"] if steps else None,
        "make_demo_total_s": round(t_total, 1),
        "cpu_s_children": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 1),
        "loadavg_1min": {
            "min": min(load_vals) if load_vals else None,
            "median": sorted(load_vals)[len(load_vals) // 2] if load_vals else None,
            "max": max(load_vals) if load_vals else None,
            "samples": loads,
        },
        **passed,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "loadavg_1min"}, indent=1))
    print("load average (1 min) min/median/max:", out["loadavg_1min"]["min"],
          out["loadavg_1min"]["median"], out["loadavg_1min"]["max"])  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(clone / ".venv")], check=False)
    print(f"clone and log kept under {work}" if args.keep else f"log: {work / 'make_demo.log'}")


if __name__ == "__main__":
    main()
