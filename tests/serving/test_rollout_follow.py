"""Every worker of every server follows a rollout change within ``serve.rollout_refresh_s``
(issue 13): a real ``bqx serve --workers 2`` (two worker processes on one home and state
DB; two separate servers are measured by ``benchmarks/bench_rollout.py --only follow``, a
third process costs CI another ~10 s of start-up), real HTTP, the changes written to the
state database as the CLI / operator write them: canary start (30 %) -> step (70 %) ->
abort -> blue/green start -> promote.

Each response says which worker answered (``X-BQX-Worker``) and which arm / version; the
expected arm of a client is known from its fixed bucket (``bqx.rollout.routing.bucket``).
A request *sent* later than ``rollout_refresh_s + SLACK_S`` after a change must be answered
as the change says, by every worker. The slack covers the maintenance tick (0.25 s), the
state-DB read and, for a start, loading the candidate (off the request path), on a loaded
2-core CI machine.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bqx.config import Settings
from bqx.rollout.routing import bucket

from .conftest import clean_env, free_port, make_settings

PAIR = "EURUSD"
REFRESH_S = 1.0  # the default of serve.rollout_refresh_s
SLACK_S = 2.0
LIMIT_S = REFRESH_S + SLACK_S

#: (what changed, expected (arm, model_version) of a client with this bucket)
Expect = Callable[[int], tuple[str, str]]


@contextmanager
def _servers(env: dict[str, str], workers: list[int]) -> Iterator[list[str]]:
    """Real ``bqx serve`` processes started side by side; their base URLs once healthy."""
    exe = str(Path(sys.executable).parent / "bqx")
    with ExitStack() as stack:
        bases = []
        procs = []
        for w in workers:
            port = free_port()
            p = subprocess.Popen(
                [exe, "serve", "--port", str(port), "--workers", str(w)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(lambda p=p: (p.terminate(), p.wait(30)))
            procs.append(p)
            bases.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        for p, base in zip(procs, bases, strict=True):
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert p.poll() is None, f"bqx serve exited with {p.returncode}"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield bases


class Clients:
    """Client threads posting predictions without pause, one fresh connection per request
    (so the kernel spreads them over a server's workers); every answer is recorded as
    (sent, received, bucket, arm, model_version, worker)."""

    def __init__(self, bases: list[str], keys: list[tuple[str, str]], per_base: int) -> None:
        self.keys = keys
        self.seen: list[tuple[float, float, int, str, str, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(b, i), daemon=True)
            for b in bases
            for i in range(per_base)
        ]

    def _run(self, base: str, offset: int) -> None:
        lim = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, limits=lim, timeout=10) as c:
            i = offset
            while not self._stop.is_set():
                kid, secret = self.keys[i % len(self.keys)]
                i += 1
                t0 = time.monotonic()
                r = c.post("/v1/predict", json={"pair": PAIR}, headers={"X-API-Key": secret})
                t1 = time.monotonic()
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
                    continue
                b = r.json()
                w = r.headers["X-BQX-Worker"]
                self.seen.append((t0, t1, bucket(kid, PAIR), b["arm"], b["model_version"], w))

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def workers(self) -> set[str]:
        return {s[5] for s in list(self.seen)}

    def wait_followed(self, t0: float, expect: Expect, workers: set[str]) -> dict[str, float]:
        """Wait until every worker answered 3 requests in a row as expected (sent after
        ``t0``); per worker, seconds from ``t0`` to its last answer of the old routing."""
        deadline = t0 + LIMIT_S + 8
        while True:
            rows = [s for s in list(self.seen) if s[0] >= t0]
            last_bad = {w: t0 for w in workers}
            good_after = dict.fromkeys(workers, 0)
            for _sent, recv, b, arm, ver, w in rows:
                if (arm, ver) != expect(b):
                    last_bad[w] = max(last_bad[w], recv)
            for sent, _recv, b, arm, ver, w in rows:
                if sent > last_bad[w] and (arm, ver) == expect(b):
                    good_after[w] += 1
            if all(n >= 3 for n in good_after.values()):
                return {w: round(t - t0, 3) for w, t in last_bad.items()}
            assert time.monotonic() < deadline, (
                f"workers did not follow within {LIMIT_S + 8:.0f} s: conforming answers "
                f"{good_after}, last old answer {last_bad}"
            )
            time.sleep(0.05)


def _keys(settings: Settings) -> list[tuple[str, str]]:
    """Reader keys whose buckets fall below 30 %, between 30 and 70 % and above 70 %."""
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    ak = ApiKeys(open_state(settings))
    keys: list[tuple[str, str]] = []
    regions = {0: 0, 1: 0, 2: 0}
    while min(regions.values()) < 2:
        kid, secret = ak.create_key("reader", rate=1e6)
        r = 0 if bucket(kid, PAIR) < 3000 else 1 if bucket(kid, PAIR) < 7000 else 2
        if regions[r] < 2:
            regions[r] += 1
            keys.append((kid, secret))
        assert len(keys) < 100
    return keys


def test_both_workers_follow_rollout_changes(home: Path) -> None:
    from bqx.rollout.machine import RolloutManager

    s = make_settings(home)
    assert s.serve.rollout_refresh_s == REFRESH_S
    keys = _keys(s)
    m = RolloutManager(s)
    m.check_version(PAIR, "2")  # warm the caller (feature-set import, registry reads)
    _ = m.registry.client  # and MLflow, which promote writes through
    env = clean_env(
        BQX_HOME=str(home),
        BQX_SERVE__RATE_LIMIT="1000000",
        BQX_SERVE__PREWARM=f'["{PAIR}"]',
    )
    cand, prod = ("candidate", "2"), ("production", "1")

    def canary(w: float) -> Expect:
        return lambda b: cand if b < round(w * 10_000) else prod

    with _servers(env, [2]) as bases, Clients(bases, keys, per_base=4) as cl:
        end = time.monotonic() + 30
        while len(cl.workers()) < 2:  # both worker processes answering
            assert time.monotonic() < end, f"saw workers {cl.workers()} only"
            time.sleep(0.1)
        workers = cl.workers()
        assert cl.wait_followed(time.monotonic(), lambda b: prod, workers)

        def step() -> None:  # what the operator's automatic advance writes
            cur = m.active(PAIR)
            assert cur is not None
            m._apply(cur, action="advance", state="canary", step=1, weight=0.7,
                     shadow=False, reason="test step", actor="test")  # fmt: skip

        changes: list[tuple[str, Callable[[], object], Expect]] = [
            (
                "canary 30 %",
                lambda: m.start(PAIR, "2", steps=[0.3, 0.7], skip_shadow=True, reason="test"),
                canary(0.3),
            ),
            ("step to 70 %", step, canary(0.7)),
            ("abort", lambda: m.abort(PAIR, reason="test"), lambda b: prod),
            (
                "blue/green",
                lambda: m.start(PAIR, "2", kind="bluegreen", skip_shadow=True, reason="test"),
                lambda b: cand,
            ),
            ("promote", lambda: m.promote(PAIR, reason="test"), lambda b: ("production", "2")),
        ]
        windows: list[tuple[str, float, Expect]] = []
        followed: dict[str, dict[str, float]] = {}
        for name, change, expect in changes:
            t0 = time.monotonic()  # before the write: the time measured includes the call
            change()
            followed[name] = cl.wait_followed(t0, expect, workers)
            windows.append((name, t0, expect))
    assert not cl.errors, cl.errors[:5]
    # over each whole window (until the next change was written): no answer of the old
    # routing arrived later than LIMIT_S after the change, from any worker of any server
    bounds = [w[1] for w in windows[1:]] + [float("inf")]
    for (name, t0, expect), t_next in zip(windows, bounds, strict=True):
        rows = [r for r in cl.seen if r[0] >= t0 and r[1] < t_next]
        bad = [r[1] - t0 for r in rows if (r[3], r[4]) != expect(r[2])]
        assert max(bad, default=0.0) <= LIMIT_S, (name, max(bad), followed[name])
        assert {r[5] for r in rows} == workers, name
    print(f"seconds until each worker followed, per change: {followed}")
