"""`make demo` on a fresh clone, timed per step (issue 15 item 1: "make demo time on a fresh
clone, per step").

Clones ``--repo`` into a temporary directory, checks out ``--branch``, runs ``make demo`` there
(the install included: the clone has no .venv) with a fresh ``BQX_HOME`` and ``--port``, time-
stamps every output line as it arrives, and records: the install (start to the demo's first
step), each step as the demo prints it, the whole wall time, the CPU seconds of the children
(``getrusage``), the load average every 10 s, and how many pairs passed the approval rule on
their own. The demo's server is stopped afterwards.

``--runs N`` (default 2) runs ``make demo`` N times in the same clone, each with a fresh
``BQX_HOME``: the first includes the install (the clone has no .venv), the others do not. Each
run records the demo's own per-step wall and CPU seconds (the CPU of its finished commands,
printed by scripts/demo.sh) and the CPU of the API server it left running (read from /proc
before the server is stopped; it runs in the background and is in no other figure).

Usage: ``python benchmarks/bench_demo_run.py --repo /path/to/repo --branch demo5
[--runs 2] [--port 18790] [--out benchmarks/results/demo_fresh_clone.json]``
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

#: a step's closing line, e.g. "   (2/8 building ...: 110 s, CPU 68 s; demo so far 143 s, CPU 82 s)"
#: (the CPU figures, bash's `times` of the demo's finished commands, since 2026-11-29 09:40)
STEP_END = re.compile(
    r"^   \((?P<step>.+): (?P<s>\d+) s(?:, CPU (?P<c>\d+) s)?; "
    r"demo so far (?P<t>\d+) s(?:, CPU (?P<ct>\d+) s)?\)$"
)
PASSED = re.compile(r"^(?P<n>\d+) of (?P<m>\d+) pairs passed the approval rule on their own")
NOT_APPROVED = re.compile(r"^NOT approved \(.*\): (?P<pairs>.+)$")


def _proc_cpu_s(pid: int) -> float | None:
    """user + system CPU seconds of a running process (Linux /proc), None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_make_demo(
    clone: Path, home: Path, port: int, log_path: Path, here: bool = False
) -> dict[str, Any]:
    """One ``make demo`` in ``clone`` with a fresh ``home``; stops the server it leaves.
    ``here``: ``bash scripts/demo.sh`` in a checkout whose venv exists (no install), keeping
    ``PYTHONPATH`` (a worktree sharing another checkout's editable venv sets it to its src)."""
    drop = ("VIRTUAL_ENV",) if here else ("PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(BQX_HOME=str(home), BQX_SERVE__PORT=str(port))
    loads: list[dict[str, Any]] = []
    stop = threading.Event()
    t_make = time.time()

    def sample() -> None:
        while not stop.is_set():
            loads.append({"t": round(time.time() - t_make, 1), "load1": os.getloadavg()[0]})
            stop.wait(10)

    threading.Thread(target=sample, daemon=True).start()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        ["bash", "scripts/demo.sh"] if here else ["make", "demo"], cwd=clone, env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )  # fmt: skip
    first_step: float | None = None
    steps: list[dict[str, Any]] = []
    passed: dict[str, Any] = {}
    log = log_path.open("w")
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.time() - t_make
        log.write(f"[{now:7.1f}] {line}")
        print(f"[{now:7.1f}] {line}", end="", flush=True)
        s = line.rstrip("\n")
        if first_step is None and s.startswith("== 1/"):
            first_step = now
        if m := STEP_END.match(s):
            st: dict[str, Any] = {
                "step": m["step"], "seconds": int(m["s"]), "demo_so_far": int(m["t"]),
                "load1_at_end": os.getloadavg()[0],
            }  # fmt: skip
            if m["c"] is not None:
                st.update(cpu_s=int(m["c"]), demo_cpu_so_far=int(m["ct"]))
            steps.append(st)
        if m := PASSED.match(s):
            passed.update(passed=int(m["n"]), pairs=int(m["m"]))
        if m := NOT_APPROVED.match(s):
            passed["not_approved"] = [p.strip() for p in m["pairs"].split(",")]
    rc = proc.wait()
    t_total = time.time() - t_make
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    log.close()
    server_cpu = None
    pid_file = home / "serve.pid"  # stop the API server the demo left running
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            pid = int(pid_file.read_text().strip())
            server_cpu = _proc_cpu_s(pid)
            os.kill(pid, signal.SIGTERM)
            for _ in range(40):
                if _proc_cpu_s(pid) is None:
                    break
                time.sleep(0.25)
    load_vals = [x["load1"] for x in loads]
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    demo_cpu = steps[-1].get("demo_cpu_so_far") if steps else None
    return {
        "date_utc": started,
        "returncode": rc,
        "install_s": round(first_step, 1) if first_step is not None else None,
        "steps": steps,
        "demo_s": steps[-1]["demo_so_far"] if steps else None,
        "demo_cpu_s": demo_cpu,
        "make_demo_total_s": round(t_total, 1),
        "cpu_s_children": round(cpu, 1),
        # make's CPU outside the demo's steps: the install (pip) when there was one
        "cpu_s_outside_steps": round(cpu - demo_cpu, 1) if demo_cpu is not None else None,
        "server_cpu_s": round(server_cpu, 1) if server_cpu is not None else None,
        "loadavg_1min": {
            "min": min(load_vals) if load_vals else None,
            "median": sorted(load_vals)[len(load_vals) // 2] if load_vals else None,
            "max": max(load_vals) if load_vals else None,
            "samples": loads,
        },
        **passed,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--branch", default="main")
    ap.add_argument("--port", type=int, default=18790)
    ap.add_argument(
        "--runs", type=int, default=2,
        help="make demo runs in the same clone (the first installs, the others do not)",
    )  # fmt: skip
    ap.add_argument(
        "--here", action="store_true",
        help="no clone and no install: run scripts/demo.sh in --repo as it is (its venv exists)",
    )  # fmt: skip
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the clone (default: delete)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bqx-demo-clone-"))
    clone = work / "repo"
    t0 = time.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if args.here:
        clone = Path(args.repo).resolve()
    else:
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", args.branch], check=True)
    commit = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(clone), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
    )  # fmt: skip
    t_clone = time.time() - t0
    runs = []
    for i in range(max(1, args.runs)):
        r = run_make_demo(
            clone, work / f"home{i}", args.port, work / f"make_demo_{i}.log", args.here
        )
        r["install_included"] = i == 0 and not args.here
        runs.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "loadavg_1min"}, indent=1))
        print("load average (1 min) min/median/max:", r["loadavg_1min"]["min"],
              r["loadavg_1min"]["median"], r["loadavg_1min"]["max"])  # fmt: skip
    out = {
        "benchmark": "demo_fresh_clone",
        "command": (
            f"{args.runs} x (BQX_HOME=<fresh> BQX_SERVE__PORT=<free> bash scripts/demo.sh) in "
            f"{args.repo} as it is (--here: no clone, no install)"
            if args.here
            else f"git clone {args.repo} <tmp> && git checkout {args.branch} && "
            f"{args.runs} x (BQX_HOME=<fresh> BQX_SERVE__PORT=<free> make demo); the first run "
            "installs (python -m venv, pip install -e .[dev]), the others reuse the venv"
        ),
        "commit": commit,
        "uncommitted_changes": dirty,
        "machine": {
            "date_utc": started,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "clone_s": round(t_clone, 1),
        "runs": runs,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if not args.keep and not args.here:
        subprocess.run(["rm", "-rf", str(clone / ".venv")], check=False)
    print(f"clone and logs kept under {work}" if args.keep else f"logs under {work}")


if __name__ == "__main__":
    main()
