"""A throw-away PostgreSQL server on a free port, for fault drills and tests.

Outage drills must stop, kill and freeze a database without touching anyone else's:
:class:`TempPostgres` runs ``initdb`` into a fresh temporary directory and ``pg_ctl`` on a
free port of 127.0.0.1 (socket in the same directory), with ``fsync=off`` (a drill kills
processes, not the machine: the OS page cache survives, so committed data does too).

As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root), via
``runuser``. Binaries come from ``BQX_PG_BIN``, ``pg_config --bindir``, the newest
``/usr/lib/postgresql/*/bin`` or ``PATH``.

    with TempPostgres() as pg:
        url = pg.url            # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.stop("immediate")    # crash-like stop (clients see connections reset)
        pg.start()              # same data, same port
        pg.freeze(); pg.thaw()  # SIGSTOP / SIGCONT every server process (a hung database)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


def _bindir() -> Path:
    env = os.environ.get("BQX_PG_BIN")
    if env:
        return Path(env)
    with contextlib.suppress(Exception):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        p = Path(out.stdout.strip())
        if (p / "initdb").exists():
            return p
    cands = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda s: int(s.split("/")[4]) if s.split("/")[4].isdigit() else 0,
    )
    if cands:
        return Path(cands[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """One disposable PostgreSQL cluster (see the module docstring)."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = _bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bqx-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, str(self.bin / tool), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{tool} failed: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def start(self, timeout_s: float = 30.0) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", str(int(timeout_s)), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``immediate`` is a crash-like stop."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def pids(self) -> list[int]:
        """The postmaster and all its children."""
        pidfile = self.data / "postmaster.pid"
        try:
            master = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return []
        out = [master]
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (d / "stat").read_text()
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    if ppid == master:
                        out.append(int(d.name))
        return out

    def freeze(self) -> None:
        """SIGSTOP every server process: a hung database (TCP still accepts, nothing answers)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        import psycopg

        end = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as con:
                    con.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def destroy(self) -> None:
        self.thaw()
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
