"""Outage drills: a real ``bqx serve`` on a throw-away PostgreSQL, a steady client, and a
database that goes away and comes back. Used by the fault tests (short outage) and by
``benchmarks/bench_outage.py`` (the issue's 15 s outage); see docs/operations.md.

Pieces, usable on their own:

* :func:`pg_project` -- point a trained project home at a :class:`TempPostgres`: copy its
  bars into a PostgreSQL store, create an API key in a PostgreSQL state database, and
  return the environment a ``bqx serve`` needs.
* :class:`Server` -- ``bqx serve`` as a subprocess (``stop()`` = SIGTERM and wait,
  ``kill()`` = SIGKILL), its output in a log file.
* :class:`Load` -- a client thread sending ``POST /v1/predict`` at a fixed rate (every
  ``historical_every``-th request with an old timestamp, which reads the store), recording
  every answer; plus a ``/readyz`` poller.
* :func:`outage_drill` -- the scenario of issue 11, returning its figures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bqx.infra.pgtemp import TempPostgres, free_port


def bqx_exe() -> str:
    return str(Path(sys.executable).parent / "bqx")


def pg_project(
    home: Path, pg: TempPostgres, *, key_rate: float = 10_000
) -> tuple[dict[str, str], str]:
    """(environment for ``bqx`` commands, a reader API key) with store and state on ``pg``."""
    from bqx.config import Settings
    from bqx.data.store import PostgresStore, open_store
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    s = Settings(home=home)
    src = open_store(settings=s)
    bars = src.read()
    src.close()
    dst = PostgresStore(pg.url, s.interval)
    dst.upsert(bars)
    dst.close()
    state = open_state(url=pg.url)
    key = ApiKeys(state).create_key("reader", rate=key_rate)[1]
    state.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(
        BQX_HOME=str(home),
        BQX_STORE_URL=pg.url,
        BQX_STATE_URL=pg.url,
        BQX_SERVE__ALIAS_TTL_S="2",
        BQX_SERVE__BARS_REFRESH_S="0.5",
    )
    return env, key


class Server:
    """``bqx serve`` on a free port of 127.0.0.1 (output in ``log``)."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        import httpx

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._f = open(log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [bqx_exe(), "serve", "--port", str(self.port), "--log-level", "warning", *args],
            env=env,
            stdout=self._f,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def wait_up(self, timeout_s: float = 90, ready: bool = False) -> float:
        """Seconds until /healthz (or /readyz when ``ready``) answers 200."""
        import httpx

        t0 = time.monotonic()
        path = "/readyz" if ready else "/healthz"
        while True:
            try:
                if self.http.get(path, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"bqx serve exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{path} not 200 after {timeout_s} s")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
        with contextlib.suppress(Exception):
            self._f.close()


@dataclass
class Answer:
    t: float  # seconds since the load started, when the request was sent
    kind: str  # live | historical
    status: int  # 0: no HTTP answer (timeout, connection error)
    code: str | None  # error code of a non-200
    decision_id: str | None
    latency_s: float


@dataclass
class Load:
    """A client at ``rate`` requests/s (one connection, requests paced, never bursting)."""

    base: str
    key: str
    pairs: tuple[str, ...]
    rate: float = 45.0
    historical_every: int = 5
    historical_from: str | None = None  # ISO time: historical requests walk forward from it
    answers: list[Answer] = field(default_factory=list)
    ready: list[tuple[float, int]] = field(default_factory=list)
    t0: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.t0 = time.monotonic()
        for fn in (self._run, self._probe):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        import httpx
        import pandas as pd

        hist0 = pd.Timestamp(self.historical_from) if self.historical_from else None
        with httpx.Client(base_url=self.base, timeout=10, headers={"X-API-Key": self.key}) as c:
            i = 0
            next_t = time.monotonic()
            while not self._stop.is_set():
                body: dict[str, Any] = {"pair": self.pairs[i % len(self.pairs)]}
                kind = "live"
                if hist0 is not None and self.historical_every and i % self.historical_every == 0:
                    kind = "historical"
                    body["timestamp"] = (hist0 + pd.Timedelta(minutes=i)).isoformat()
                t_send = self.now()
                t1 = time.perf_counter()
                try:
                    r = c.post("/v1/predict", json=body)
                    d = r.json()
                    ans = Answer(
                        t_send,
                        kind,
                        r.status_code,
                        None if r.status_code == 200 else str(d.get("error")),
                        d.get("decision_id") if r.status_code == 200 else None,
                        time.perf_counter() - t1,
                    )
                except Exception as e:
                    ans = Answer(t_send, kind, 0, type(e).__name__, None, time.perf_counter() - t1)
                self.answers.append(ans)
                i += 1
                next_t += 1.0 / self.rate
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.monotonic()  # fell behind: do not burst

    def _probe(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=5) as c:
            while not self._stop.is_set():
                t = self.now()
                try:
                    st = c.get("/readyz").status_code
                except Exception:
                    st = 0
                self.ready.append((t, st))
                time.sleep(0.2)


def recovery_after(answers: list[Answer], t_up: float) -> float | None:
    """Seconds from ``t_up`` to the first request after which every request is 200
    (None: never recovered within the run)."""
    after = [a for a in answers if a.t >= t_up]
    if not after:
        return None
    last_bad = max((a.t for a in after if a.status != 200), default=None)
    if last_bad is None:
        return 0.0
    later = [a.t for a in after if a.t > last_bad]
    return (min(later) - t_up) if later else None


def logged_decisions(url: str) -> set[str]:
    from bqx.state import open_state

    st = open_state(url=url)
    try:
        return set(st.read_decisions()["decision_id"])
    finally:
        st.close()


def outage_drill(
    home: Path,
    *,
    outage_s: float = 15.0,
    rate: float = 45.0,
    before_s: float = 3.0,
    after_s: float = 12.0,
    pairs: tuple[str, ...] = ("EURUSD", "USDJPY", "GBPUSD"),
    historical_every: int = 5,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Issue 11's scenario on ``home`` (a trained project): figures as a dict.

    ``pg_ctl stop -m immediate`` ``before_s`` seconds into the load, restart ``outage_s``
    later, keep the load on for ``after_s``, stop the server gracefully, then compare the
    decision log with the 200 answers.
    """
    import pandas as pd

    log_dir = log_dir or home
    with TempPostgres() as pg:
        pg.wait_ready()
        env, key = pg_project(home, pg)
        srv = Server(env, log_dir / "serve.log")
        try:
            start_s = srv.wait_up(ready=True)
            newest = pd.Timestamp(srv.http.get("/readyz").json()["newest_bar"])
            load = Load(
                srv.base,
                key,
                pairs,
                rate=rate,
                historical_every=historical_every,
                historical_from=(newest - pd.Timedelta(days=2)).isoformat(),
            )
            load.start()
            time.sleep(before_s)
            t_down = load.now()
            pg.stop("immediate")
            time.sleep(outage_s)
            pg.start()
            t_up = load.now()
            time.sleep(after_s)
            load.stop()
        finally:
            srv.stop()
        logged = logged_decisions(pg.url)
    answers = load.answers
    ok_ids = {a.decision_id for a in answers if a.status == 200 and a.decision_id}
    by_status: dict[str, int] = {}
    by_code: dict[str, int] = {}
    for a in answers:
        by_status[str(a.status)] = by_status.get(str(a.status), 0) + 1
        if a.status != 200:
            by_code[str(a.code)] = by_code.get(str(a.code), 0) + 1
    ready_after = [t for t, st in load.ready if t >= t_up and st == 200]
    notready_after_down = [t for t, st in load.ready if t >= t_down and st != 200]
    lat = sorted(a.latency_s for a in answers)
    return {
        "outage_s": outage_s,
        "rate_per_s": rate,
        "server_start_to_ready_s": round(start_s, 2),
        "requests": len(answers),
        "by_status": by_status,
        "by_error": by_code,
        "status_500": by_status.get("500", 0),
        "status_503": by_status.get("503", 0),
        "no_answer": by_status.get("0", 0),
        "max_latency_s": round(lat[-1], 3) if lat else None,
        "recovery_s": _r(recovery_after(answers, t_up)),
        "recovery_live_s": _r(recovery_after([a for a in answers if a.kind == "live"], t_up)),
        "recovery_historical_s": _r(
            recovery_after([a for a in answers if a.kind == "historical"], t_up)
        ),
        "readyz_false_after_s": _r(min(notready_after_down) - t_down)
        if notready_after_down
        else None,
        "readyz_back_after_s": _r(ready_after[0] - t_up) if ready_after else None,
        "answered_200": len(ok_ids),
        "logged": len(logged & ok_ids),
        "logged_not_answered": len(logged - ok_ids),
        "lost": len(ok_ids - logged),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
