"""The state database on SQLite (WAL) and PostgreSQL: one suite, both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqx.errors import ConfigError
from bqx.state import (
    DECISION_COLUMNS,
    DecisionLogWriter,
    StateDB,
    as_utc,
    normalize_state_url,
    open_state,
)

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def state(request: pytest.FixtureRequest, tmp_path: Path):
    """The same tests run against SQLite and PostgreSQL (unique table prefix, dropped)."""
    if request.param == "sqlite":
        s = StateDB(f"sqlite:///{tmp_path / 'nested' / 'state.db'}")
        yield s
        s.close()
    else:
        url = request.getfixturevalue("pg_url")
        s = StateDB(url, prefix=f"t{uuid.uuid4().hex[:10]}_")
        try:
            yield s
        finally:
            s.drop_all()
            s.close()


def _decision(i: int, pair: str = "EURUSD", **kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "pair": pair,
        "request_time": T0 + timedelta(seconds=i),
        "asof_ts": T0 + timedelta(minutes=i),
        "horizon": 60,
        "prediction": 0.0001 * i,
        "interval_lo": -0.001,
        "interval_hi": 0.001,
        "confidence_level": 0.9,
        "signal": "HOLD",
        "signal_strength": 0.0,
        "model_name": f"bqx-{pair}",
        "model_version": 3,
        "latency_ms": 1.5,
        "feature_hash": "abc",
        "key_id": "k1",
    }
    d.update(kw)
    return d


# -- setup ---------------------------------------------------------------------------------
def test_sqlite_pragmas_and_parent_dir(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "state.db"
    s = StateDB(f"sqlite:///{db}")
    assert db.exists()
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    s.close()


def test_tables_created_idempotently(state: StateDB) -> None:
    state.log_decision(pair="EURUSD", prediction=0.1)
    state.create_tables()
    again = StateDB(state.url, prefix=state.prefix)
    assert again.count_decisions() == 1
    again.close()


def test_urls() -> None:
    assert normalize_state_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_state_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_state_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ConfigError):
        normalize_state_url("mysql://u@h/db")


def test_open_state_uses_home(_isolated_home: Path) -> None:
    s = open_state()
    assert s.url == f"sqlite:///{(_isolated_home / 'state.db').as_posix()}"
    assert (_isolated_home / "state.db").exists()
    assert s.ping()
    s.close()


def test_in_memory_sqlite() -> None:
    s = StateDB("sqlite://")
    s.log_decision(pair="EURUSD", prediction=0.1)
    assert s.count_decisions() == 1


def test_as_utc() -> None:
    assert as_utc("2024-01-01T10:00:00Z") == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert as_utc(datetime(2024, 1, 1, 10)) == datetime(2024, 1, 1, 10, tzinfo=UTC)
    plus2 = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus2).tzinfo is UTC and as_utc(plus2).hour == 10
    assert as_utc(pd.Timestamp("2024-01-01 10:00", tz="UTC")) == datetime(
        2024, 1, 1, 10, tzinfo=UTC
    )
    assert as_utc(np.datetime64("2024-01-01T10:00")) == datetime(2024, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        as_utc("yesterday")


# -- decisions -----------------------------------------------------------------------------
def test_decision_roundtrip(state: StateDB) -> None:
    did = state.log_decision(**_decision(1))  # type: ignore[arg-type]
    ids = state.log_decisions([_decision(i, "USDJPY") for i in range(2, 6)])
    assert len(ids) == 4 and len(set(ids)) == 4
    df = state.read_decisions()
    assert list(df.columns) == list(DECISION_COLUMNS)
    assert len(df) == 5
    row = df[df.decision_id == did].iloc[0]
    assert row.pair == "EURUSD" and row.model_version == "3" and row.horizon == 60
    assert row.request_time == pd.Timestamp(T0 + timedelta(seconds=1))
    assert row.asof_ts == pd.Timestamp(T0 + timedelta(minutes=1))
    for c in ("request_time", "asof_ts", "realized_at"):
        assert str(df[c].dtype) == "datetime64[ns, UTC]"
    assert df.prediction.dtype == np.float64
    assert pd.isna(row.realized_target) and pd.isna(row.realized_at)
    assert row.extra is None
    with_extra = state.log_decision(pair="EURUSD", prediction=0.0, extra={"arm": "B", "n": 70})
    got = state.read_decisions().set_index("decision_id").loc[with_extra, "extra"]
    assert got == {"arm": "B", "n": 70}


def test_decision_filters(state: StateDB) -> None:
    state.log_decisions(
        [_decision(i) for i in range(10)] + [_decision(i, "GBPUSD") for i in range(3)]
    )
    assert len(state.read_decisions("EURUSD")) == 10
    assert len(state.read_decisions(["EURUSD", "GBPUSD"])) == 13
    # bounds are inclusive; naive timestamps are UTC; other zones are converted
    win = state.read_decisions(
        "EURUSD",
        start=T0 + timedelta(seconds=2),
        end=(T0 + timedelta(seconds=4)).replace(tzinfo=None),
    )
    assert list(win.prediction.round(6)) == [0.0002, 0.0003, 0.0004]
    tokyo = timezone(timedelta(hours=9))
    by_asof = state.read_decisions(
        "EURUSD", start=(T0 + timedelta(minutes=8)).astimezone(tokyo), by="asof_ts"
    )
    assert len(by_asof) == 2
    last = state.read_decisions("EURUSD", limit=3)
    assert list(last.request_time) == [pd.Timestamp(T0 + timedelta(seconds=i)) for i in (7, 8, 9)]
    assert state.count_decisions("GBPUSD") == 3


def test_decision_defaults_and_validation(state: StateDB) -> None:
    before = datetime.now(UTC)
    did = state.log_decision(pair="EURUSD", prediction=np.float64(0.5), horizon=np.int64(60))  # type: ignore[arg-type]
    uuid.UUID(did)
    df = state.read_decisions()
    assert df.request_time.iloc[0] >= pd.Timestamp(before) - pd.Timedelta(seconds=1)
    assert df.prediction.iloc[0] == 0.5
    with pytest.raises(ValueError, match="unknown decision field"):
        state.log_decisions([{"pair": "EURUSD", "predicton": 1.0}])
    with pytest.raises(ValueError, match="pair"):
        state.log_decisions([{"prediction": 1.0}])
    assert state.log_decisions([]) == []


def test_empty_read_has_dtypes(state: StateDB) -> None:
    df = state.read_decisions()
    assert df.empty and list(df.columns) == list(DECISION_COLUMNS)
    assert str(df.request_time.dtype) == "datetime64[ns, UTC]"


def test_set_realized(state: StateDB) -> None:
    ids = state.log_decisions([_decision(i) for i in range(3)])
    n = state.set_realized({ids[0]: 0.01, ids[2]: -0.02}, at=T0 + timedelta(hours=2))
    assert n == 2
    df = state.read_decisions().set_index("decision_id")
    assert df.loc[ids[0], "realized_target"] == 0.01
    assert np.isnan(float(df.loc[ids[1], "realized_target"]))  # type: ignore[arg-type]
    assert df.loc[ids[2], "realized_at"] == pd.Timestamp(T0 + timedelta(hours=2))


# -- promotions ----------------------------------------------------------------------------
def _promote(state: StateDB, v: str, frm: str | None = None) -> None:
    state.record_promotion("EURUSD", "bqx-EURUSD", action="promote", to_version=v, from_version=frm)


def _rollback(state: StateDB) -> str | None:
    """What the registry does: roll back to previous_production and record it."""
    cur, prev = state.current_production("EURUSD"), state.previous_production("EURUSD")
    state.record_promotion(
        "EURUSD", "bqx-EURUSD", action="rollback", from_version=cur, to_version=prev, actor="ops"
    )
    return prev


def test_double_rollback_walks_back(state: StateDB) -> None:
    assert state.previous_production("EURUSD") is None
    for v, frm in (("1", None), ("2", "1"), ("3", "2")):
        _promote(state, v, frm)
    state.record_promotion("EURUSD", "bqx-EURUSD", action="approve", to_version="4")
    state.record_promotion("EURUSD", "bqx-EURUSD", action="reject", to_version="5")
    assert state.current_production("EURUSD") == "3"
    assert state.previous_production("EURUSD") == "2"
    assert _rollback(state) == "2"
    assert state.current_production("EURUSD") == "2"
    # the second rollback goes further back, it does not flip back to 3
    assert state.previous_production("EURUSD") == "1"
    assert _rollback(state) == "1"
    assert state.current_production("EURUSD") == "1"
    assert state.previous_production("EURUSD") is None
    # promoting again, then rolling back, returns to 1
    _promote(state, "6", "1")
    assert state.production_stack("EURUSD") == ["1", "6"]
    assert _rollback(state) == "1"
    # other pairs are independent
    assert state.current_production("GBPUSD") is None


def test_promotion_edge_cases(state: StateDB) -> None:
    for v in ("1", "2", "2", "3", "4"):  # promoting the current version again is a no-op
        _promote(state, v)
    assert state.production_stack("EURUSD") == ["1", "2", "3", "4"]
    # an explicit rollback target is honoured: the stack is cut back to it
    state.record_promotion("EURUSD", "m", action="rollback", from_version="4", to_version="2")
    assert state.production_stack("EURUSD") == ["1", "2"]
    # a rollback to a version never in production pushes it
    state.record_promotion("EURUSD", "m", action="rollback", from_version="2", to_version="9")
    assert state.production_stack("EURUSD") == ["1", "9"]
    # rollback to "none" leaves no production version
    state.record_promotion("EURUSD", "m", action="rollback", from_version="9", to_version=None)
    assert state.current_production("EURUSD") is None
    with pytest.raises(ValueError):
        state.record_promotion("EURUSD", "m", action="promote", to_version=None)
    with pytest.raises(ValueError):
        state.record_promotion("EURUSD", "m", action="delete", to_version="1")  # type: ignore[arg-type]


def test_promotion_history(state: StateDB) -> None:
    _promote(state, "1")
    state.record_promotion(
        "EURUSD", "bqx-EURUSD", action="promote", to_version=2, from_version=1, actor="key:abc",
        reason="better R²", at="2024-05-01T12:00:00+02:00",
    )  # fmt: skip
    state.record_promotion("GBPUSD", "bqx-GBPUSD", action="promote", to_version="7")
    h = state.promotion_history("EURUSD")
    assert list(h.columns) == [
        "id", "pair", "model_name", "action", "from_version", "to_version", "actor", "reason", "at",
    ]  # fmt: skip
    assert list(h.to_version) == ["1", "2"]
    assert h.actor.iloc[0]  # the OS user by default
    assert h.actor.iloc[1] == "key:abc" and h.reason.iloc[1] == "better R²"
    assert h["at"].iloc[1] == pd.Timestamp("2024-05-01T10:00:00Z")
    assert str(h["at"].dtype) == "datetime64[ns, UTC]"
    assert len(state.promotion_history()) == 3


# -- alerts --------------------------------------------------------------------------------
def test_alerts_dedup_and_resolve(state: StateDB) -> None:
    a1 = state.raise_alert("drift", "PSI 0.3", pair="EURUSD", severity="warning")
    a2 = state.raise_alert("drift", "PSI 0.4", pair="EURUSD", severity="critical")
    assert a1.created and not a2.created and a1.id == a2.id
    other = state.raise_alert("drift", "PSI 0.3", pair="GBPUSD")
    assert other.created and other.id != a1.id
    open_ = state.read_alerts(open_only=True, pair="EURUSD")
    assert len(open_) == 1
    assert open_["count"].iloc[0] == 2 and open_.message.iloc[0] == "PSI 0.4"
    assert open_.severity.iloc[0] == "critical"
    assert state.resolve_alert("drift:EURUSD") == 1
    assert state.resolve_alert("drift:EURUSD") == 0
    a3 = state.raise_alert("drift", "again", pair="EURUSD")
    assert a3.created and a3.id != a1.id
    assert len(state.read_alerts(pair="EURUSD")) == 2
    assert len(state.read_alerts(open_only=True)) == 2
    with pytest.raises(ValueError):
        state.raise_alert("x", "y", severity="panic")


# -- api keys (low level) ------------------------------------------------------------------
def test_api_key_rows(state: StateDB) -> None:
    state.insert_api_key(key_id="abc", role="trader", hash="h" * 64, salt="s" * 32, params="p")
    r = state.get_api_key("abc")
    assert r is not None and r["role"] == "trader" and r["created_at"].tzinfo is not None
    assert state.get_api_key("zzz") is None
    listed = state.list_api_keys()
    assert len(listed) == 1 and "hash" not in listed[0] and "salt" not in listed[0]
    assert state.revoke_api_key("abc", at=T0)
    assert state.revoke_api_key("abc")  # already revoked: keeps the first time
    assert state.get_api_key("abc")["revoked_at"] == T0  # type: ignore[index]
    assert not state.revoke_api_key("nope")
    state.touch_api_keys({"abc": T0 + timedelta(hours=1)})
    assert state.list_api_keys()[0]["last_used_at"] == T0 + timedelta(hours=1)
    with pytest.raises(ValueError):
        state.insert_api_key(key_id="x", role="root", hash="h", salt="s", params="p")


# -- concurrency ---------------------------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from bqx.state import StateDB
    from pathlib import Path
    url, prefix, tag, n, sync = sys.argv[1:6]
    s = StateDB(url, prefix=prefix)
    Path(sync, f"ready-{tag}").touch()
    while not Path(sync, "go").exists():  # start barrier: both processes write at once
        time.sleep(0.001)
    t0 = time.time()
    for i in range(int(n)):
        s.log_decision(pair="EURUSD", prediction=float(i), model_version=tag,
                       decision_id=f"{tag}-{i}")
        if i % 50 == 0:
            s.log_decisions([{"pair": "GBPUSD", "prediction": float(j), "model_version": tag,
                              "decision_id": f"{tag}-b{i}-{j}"} for j in range(20)])
            s.read_decisions("GBPUSD", limit=5)
    print(json.dumps({"start": t0, "end": time.time()}))
    """
)


def test_two_processes_write_concurrently(state: StateDB, tmp_path: Path) -> None:
    """Two real processes append to the same database at once: no lost rows, no errors."""
    n = 300
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, state.url, state.prefix, tag, str(n), str(sync)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    deadline = time.time() + 60
    while not all((sync / f"ready-{t}").exists() for t in ("p1", "p2")):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "writer died"
        time.sleep(0.01)
    (sync / "go").touch()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err.lower()
        spans.append(__import__("json").loads(out.strip().splitlines()[-1]))
    # the two writers really overlapped in time
    assert max(s["start"] for s in spans) < min(s["end"] for s in spans)
    per_proc = n + (n // 50) * 20
    df = state.read_decisions()
    assert len(df) == 2 * per_proc
    assert df.decision_id.is_unique
    assert (df.model_version.value_counts() == per_proc).all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_engine_is_replaced_after_fork(tmp_path: Path) -> None:
    s = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    s.log_decision(pair="EURUSD", prediction=1.0)  # parent has a pooled connection now
    parent_engine = s.engine
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        code = 1
        try:
            if s.engine is not parent_engine:
                s.log_decision(pair="EURUSD", prediction=2.0)
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.engine is parent_engine
    s.log_decision(pair="EURUSD", prediction=3.0)
    assert sorted(s.read_decisions().prediction) == [1.0, 2.0, 3.0]


# -- background writer ---------------------------------------------------------------------
def test_writer_batches_from_threads(state: StateDB) -> None:
    w = DecisionLogWriter(state, max_batch=50)
    ids: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(100):
            did = w.submit(_decision(i, request_time=T0 + timedelta(seconds=t * 1000 + i)))
            with lock:
                ids.append(did)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.flush(10)
    assert state.count_decisions() == 400 and w.written == 400 and w.failed == 0
    assert set(state.read_decisions().decision_id) == set(ids)
    w.submit(_decision(1))
    w.close()
    assert state.count_decisions() == 401
    with pytest.raises(ValueError):
        DecisionLogWriter(state).submit({"pair": "EURUSD", "bogus": 1})


def test_writer_group_commit_and_prompt_flush(tmp_path: Path) -> None:
    """Rows arriving within ``linger_s`` of a batch's first row share one transaction (one
    SQLite commit per row cost ~1-2 ms of a worker's CPU); a flush does not wait out the
    linger; without linger the same spaced rows are written one by one."""
    for linger, batches_max, batches_min in ((2.0, 1, 1), (0.0, 3, 3)):
        s = StateDB(f"sqlite:///{tmp_path / f'state{linger}.db'}")
        sizes: list[int] = []
        real = s.log_decisions

        def spy(rows: list[dict[str, object]], _real=real, _sizes=sizes, **kw: object) -> list[str]:
            _sizes.append(len(rows))
            return _real(rows, **kw)

        s.log_decisions = spy  # type: ignore[method-assign]
        w = DecisionLogWriter(s, linger_s=linger)
        for i in range(3):
            w.submit(_decision(i))
            time.sleep(0.1)  # longer than a write: without linger each row is its own batch
        t0 = time.monotonic()
        assert w.flush(5)
        assert time.monotonic() - t0 < 1.0  # not the 2 s linger
        assert batches_min <= len(sizes) <= batches_max and sum(sizes) == 3
        assert s.count_decisions() == 3
        w.close()
    # a full batch does not wait out the linger either (the writer sleeps through the
    # linger instead of waking per row; a full queue wakes it)
    s = StateDB(f"sqlite:///{tmp_path / 'state_full.db'}")
    w = DecisionLogWriter(s, linger_s=5.0, max_batch=4)
    t0 = time.monotonic()
    w.submit(_decision(0))
    time.sleep(0.2)  # the writer is in its linger now
    for i in range(1, 4):
        w.submit(_decision(i))
    while s.count_decisions() < 4 and time.monotonic() - t0 < 4.0:
        time.sleep(0.02)
    assert s.count_decisions() == 4 and time.monotonic() - t0 < 4.0
    w.close()


def test_writer_backpressure_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    gate = threading.Event()
    real = s.log_decisions

    def slow(rows: list[dict[str, object]], **kw: object) -> list[str]:
        if threading.current_thread().name == "bqx-decision-log":
            gate.wait(5)
        return real(rows, **kw)

    monkeypatch.setattr(s, "log_decisions", slow)
    w = DecisionLogWriter(s, max_queue=1, put_timeout_s=0.01)
    w.submit(_decision(1))  # picked up by the thread, which blocks
    time.sleep(0.1)
    w.submit(_decision(2))  # fills the queue
    w.submit(_decision(3))  # queue full: written synchronously, not dropped
    assert s.count_decisions() == 1
    gate.set()
    assert w.flush(5)
    assert s.count_decisions() == 3
    w.close()

    errors: list[int] = []

    def broken(rows: list[dict[str, object]], **kw: object) -> list[str]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(s, "log_decisions", broken)
    w2 = DecisionLogWriter(s, retries=1, on_error=lambda e, n: errors.append(n))
    w2.submit(_decision(4))
    assert w2.flush(5)
    assert w2.failed == 1 and errors == [1]
    w2.close()


def test_sqlite_writes_take_the_lock_up_front(tmp_path: Path) -> None:
    """Writes begin with BEGIN IMMEDIATE (so busy_timeout applies), reads with BEGIN."""
    from sqlalchemy import event

    s = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    seen: list[str] = []
    event.listen(s.engine, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0:2]))
    s.log_decision(pair="EURUSD", prediction=1.0)
    assert seen[0] == ["BEGIN", "IMMEDIATE"]
    seen.clear()
    s.read_decisions()
    assert seen[0] == ["BEGIN"]


def test_unreachable_server_is_a_clear_error() -> None:
    from bqx.state import StateError

    with pytest.raises(StateError, match="state database") as e:
        StateDB("postgresql://nobody:secret@127.0.0.1:1/nope")
    assert "secret" not in str(e.value)  # the password is redacted
