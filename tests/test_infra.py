"""Shared infrastructure helpers and the decision-log writer's outage behaviour: redaction,
backoff, outage classification, memory -> spill -> replay, orphan spill files, disk full."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bqx.infra.outage import classify
from bqx.infra.redact import public_address, redact, redact_tree
from bqx.infra.retry import Backoff, Breaker, retry
from bqx.state import DecisionLogWriter, StateDB, StateError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _row(i: int) -> dict[str, object]:
    return {
        "decision_id": f"d{i:05d}",
        "pair": "EURUSD",
        "prediction": 0.1,
        "request_time": T0 + timedelta(seconds=i),
    }


# -- redaction (18.16) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, secret",
    [
        ("postgresql://app:s3cret@db:5432/bqx", "s3cret"),
        ("postgresql+psycopg://app:p%40ss@db/bqx?sslmode=require", "p%40ss"),
        ("redis://:tok3n@cache:6379/0", "tok3n"),
        ("host=db user=app password=s3cret dbname=bqx", "s3cret"),
        ("https://mlflow/?token=abc123&x=1", "abc123"),
        ("failed: connection to postgresql://u:pw9@h/db refused", "pw9"),
    ],
)
def test_redact_hides_secrets(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out
    assert redact(out) == out  # idempotent


def test_redact_keeps_what_operators_need() -> None:
    assert redact("postgresql://app@db:5432/bqx") == "postgresql://app@db:5432/bqx"
    assert redact("duckdb:////data/bars.duckdb") == "duckdb:////data/bars.duckdb"
    assert redact_tree({"a": ["postgresql://u:x@h/d"], "n": 1}) == {
        "a": ["postgresql://u:***@h/d"],
        "n": 1,
    }


def test_public_address_reveals_nothing_but_the_scheme() -> None:
    a = public_address("postgresql://app:pw@db.internal:5432/bqx")
    assert a is not None and a.startswith("postgresql://<redacted>#")
    for leak in ("app", "pw", "db.internal", "5432", "bqx"):
        assert leak not in a.split("#")[0] + a.split("#")[0]
    assert public_address("duckdb:////srv/x/bars.duckdb") != a
    assert "srv" not in (public_address("duckdb:////srv/x/bars.duckdb") or "")


# -- backoff ----------------------------------------------------------------------------------
def test_backoff_is_bounded_and_exponential() -> None:
    b = Backoff(base_s=0.1, max_s=1.0, jitter=0.0)
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == 0.1


def test_retry_retries_transient_only() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert retry(flaky, attempts=5, sleep=lambda s: None) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("bad input")), sleep=lambda s: None)


def test_breaker_allows_next_attempt_after_backoff() -> None:
    br = Breaker("x", base_s=0.05, max_s=0.05)
    assert br.due()
    br.failed(ConnectionError("postgresql://u:pw@h/d down"))
    assert not br.healthy and not br.due() and "pw" not in str(br.last_error)
    assert br.due(now=1e12)
    br.ok()
    assert br.healthy and br.due()


def test_classify_infrastructure_vs_bugs() -> None:
    import psycopg
    import sqlalchemy.exc

    from bqx.errors import RegistryUnavailableError, StoreError

    assert classify(StoreError("x")).code == "store_unavailable"  # type: ignore[union-attr]
    assert classify(StateError("x")).component == "state"  # type: ignore[union-attr]
    assert classify(RegistryUnavailableError("x")).code == "registry_unavailable"  # type: ignore[union-attr]
    assert classify(psycopg.OperationalError("the connection is closed")) is not None
    op = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone"))
    assert classify(op).component == "state"  # type: ignore[union-attr]
    assert classify(ValueError("bug")) is None and classify(KeyError("k")) is None


# -- decision writer: no decision lost -----------------------------------------------------
class Flaky:
    """Wraps a StateDB; ``down`` makes every write fail like an unreachable server."""

    def __init__(self, state: StateDB) -> None:
        self.state, self.down, self.calls = state, False, 0

    def log_decisions(self, rows, **kw):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.down:
            raise StateError("state database: connection refused")
        return self.state.log_decisions(rows, **kw)


@pytest.fixture
def state(tmp_path: Path) -> StateDB:
    return StateDB(f"sqlite:///{tmp_path / 'state.db'}")


def test_writer_holds_spills_and_replays_in_order(state: StateDB, tmp_path: Path) -> None:
    f = Flaky(state)
    spill = tmp_path / "spill"
    w = DecisionLogWriter(f, spill_dir=spill, max_memory=5, retry_max_s=0.05)  # type: ignore[arg-type]
    w.submit(_row(0))
    assert w.flush(5) and state.count_decisions() == 1
    f.down = True
    for i in range(1, 13):
        w.submit(_row(i))
    assert w.flush(5)
    assert w.held == 12 and w.held_memory <= 5 and w.held_spill >= 7
    assert not w.status()["database_ok"] and w.status()["spill_ok"]
    files = list(spill.glob("decisions-*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == w.held_spill
    f.down = False
    assert w.wait_written(10)
    got = state.read_decisions()
    assert list(got["decision_id"]) == [f"d{i:05d}" for i in range(13)]
    assert w.replayed == 12 and w.failed == 0
    w.close()
    assert not list(spill.glob("decisions-*.jsonl"))  # empty spill files are removed


def test_shutdown_with_database_down_spills_and_next_writer_replays(
    state: StateDB, tmp_path: Path
) -> None:
    f = Flaky(state)
    spill = tmp_path / "spill"
    f.down = True
    w = DecisionLogWriter(f, spill_dir=spill, max_memory=1000, retry_max_s=0.05)  # type: ignore[arg-type]
    for i in range(20):
        w.submit(_row(i))
    w.close()  # still down: memory goes to the spill file
    assert w.held_memory == 0
    assert sum(len(p.read_text().splitlines()) for p in spill.glob("*.jsonl")) == 20
    # a replayed batch may already be partly in the database: insert-if-absent
    state.log_decisions([_row(3), _row(7)])
    with (spill / "decisions-crashed-1-abc.jsonl").open("w") as fh:  # a kill -9'd writer
        fh.write(json.dumps({**_row(20), "request_time": (T0 + timedelta(seconds=20)).isoformat()}))
        fh.write('\n{"decision_id": "torn')  # a line cut by the crash
    w2 = DecisionLogWriter(state, spill_dir=spill, retry_max_s=0.05)
    assert w2.held == 21
    assert w2.wait_written(10)
    assert state.count_decisions() == 21
    w2.close()
    assert not list(spill.glob("*.jsonl"))


def test_disk_full_is_loud_and_drops_nothing(
    state: StateDB,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spill file cannot be written (ENOSPC): CRITICAL log, the hook, readiness False,
    rows kept in memory beyond the bound; all written once the database is back."""
    from types import SimpleNamespace

    import bqx.state.decision_writer as dw
    from bqx.serving.resilience import readiness_checks

    def full(self, rows):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dw._SpillFile, "append", full)
    f = Flaky(state)
    f.down = True
    crit: list[BaseException] = []
    w = DecisionLogWriter(
        f,  # type: ignore[arg-type]
        spill_dir=tmp_path / "spill",
        max_memory=0,
        retry_max_s=0.05,
        on_critical=crit.append,
    )
    for i in range(4):
        w.submit(_row(i))
    assert w.flush(5)
    assert w.spill_ok is False and len(crit) == 1 and w.held_memory == 4
    assert any(r.levelname == "CRITICAL" for r in caplog.records)
    checks, ok = readiness_checks(SimpleNamespace(state=state, _writer=w))  # type: ignore[arg-type]
    assert ok is False and checks["decision_log"]["spill_ok"] is False
    f.down = False
    assert w.wait_written(10) and state.count_decisions() == 4
    assert w.spill_ok is True  # nothing at risk any more: ready again
    w.close()
