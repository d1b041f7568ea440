"""Captured inputs are stored packed (float64 bytes + a feature-set key) and state DBs
holding rows of the first format (a JSON object per row) keep working: the table is
migrated in place, old and new rows read back as the same frame, and drift over them is
identical (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from bqx.monitoring.drift import build_baseline, drift_report
from bqx.state import StateDB
from bqx.state.captures import capture_row

# the captures table before the packed format (columns and types)
_OLD = """CREATE TABLE {p}captures (decision_id VARCHAR(64) PRIMARY KEY,
captured_at {ts} NOT NULL, pair VARCHAR(16) NOT NULL, asof_ts {ts}, model_version VARCHAR(64),
"values" JSON)"""
NAMES = [f"f{i}" for i in range(7)]
T0 = pd.Timestamp("2024-01-04 00:00", tz="UTC")


def _data(n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = np.cumsum(rng.normal(size=(n, len(NAMES))), axis=0) / 10
    x[3, 2] = np.nan
    x[7, 5] = np.inf  # non-finite -> NaN, as JSON null was
    return x


def _old_rows(conn: sa.Connection, p: str, x: np.ndarray, pg: bool) -> None:
    ts = "CAST(:t AS TIMESTAMPTZ)" if pg else ":t"
    stmt = sa.text(
        f"INSERT INTO {p}captures (decision_id, captured_at, pair, asof_ts, model_version, "
        f"\"values\") VALUES (:id, {ts}, 'EURUSD', {ts}, '1', :v)"
    )
    for i, row in enumerate(x):
        t = (T0 + pd.Timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
        v = {n: (float(a) if np.isfinite(a) else None) for n, a in zip(NAMES, row, strict=True)}
        conn.execute(stmt, {"id": f"old{i:04d}", "t": t, "v": json.dumps(v)})


def _check(s: StateDB, x: np.ndarray) -> None:
    n = len(x)
    s.write_captures(
        capture_row(decision_id=f"new{i:04d}", pair="GBPUSD", asof_ts=T0 + pd.Timedelta(minutes=i),
                    model_version="1", names=NAMES, values=x[i])
        for i in range(n)
    )  # fmt: skip
    old = s.read_captures("EURUSD")
    new = s.read_captures("GBPUSD")
    assert len(old) == len(new) == n
    assert list(old.columns) == list(new.columns) == [
        "decision_id", "pair", "asof_ts", "model_version", *NAMES,
    ]  # fmt: skip
    assert old["asof_ts"].tolist() == new["asof_ts"].tolist()
    assert str(old["asof_ts"].dtype) == "datetime64[ns, UTC]"
    a, b = old[NAMES].to_numpy(), new[NAMES].to_numpy()
    assert np.isnan(a[3, 2]) and np.isnan(a[7, 5]) and np.isnan(b[7, 5])
    np.testing.assert_array_equal(a, b)  # bit-identical, NaN where JSON had null
    base = build_baseline({c: x[:, i] for i, c in enumerate(NAMES)})
    ro = drift_report(base, {c: old[c].to_numpy(float) for c in NAMES})
    rn = drift_report(base, {c: new[c].to_numpy(float) for c in NAMES})
    assert json.dumps(ro, sort_keys=True) == json.dumps(rn, sort_keys=True)
    both = s.read_captures(start=T0, end=T0 + pd.Timedelta(minutes=n))  # mixed formats
    assert len(both) == 2 * n and both["asof_ts"].is_monotonic_increasing
    np.testing.assert_array_equal(
        both.set_index("decision_id").loc[[f"old{i:04d}" for i in range(n)], NAMES].to_numpy(), a
    )
    # one column of every pair (the relative-volatility column's read): only that column is
    # decoded, from both formats, and equals read_captures' (rows without it left out)
    col = s.read_capture_column(NAMES[2], T0, T0 + pd.Timedelta(minutes=n))
    ref = both.dropna(subset=[NAMES[2]])
    assert len(col) == len(ref) == 2 * n - 2  # row 3 is NaN in both formats
    assert col["pair"].tolist() == ref["pair"].tolist()
    assert col["asof_ts"].tolist() == ref["asof_ts"].tolist()
    np.testing.assert_array_equal(col["value"].to_numpy(), ref[NAMES[2]].to_numpy())
    assert s.read_capture_column("no_such_feature").empty
    s.write_captures([{"decision_id": "dict1", "pair": "USDJPY", "asof_ts": T0,
                       "model_version": "2", "values": {"z": 1.5, "y": None}}])  # fmt: skip
    d = s.read_captures("USDJPY")
    assert d[["z", "y"]].iloc[0].tolist()[0] == 1.5 and np.isnan(d["y"].iloc[0])


def test_old_json_captures_read_like_packed_ones_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    x = _data()
    eng = sa.create_engine(f"sqlite:///{path}")
    with eng.begin() as c:
        c.exec_driver_sql(_OLD.format(p="", ts="DATETIME"))
        _old_rows(c, "", x, pg=False)
    eng.dispose()
    s = StateDB(f"sqlite:///{path}")  # migrates: packed columns + feature-set table
    _check(s, x)
    s.close()


@pytest.mark.integration
def test_old_json_captures_read_like_packed_ones_postgres(pg_url: str) -> None:
    p = f"t{uuid.uuid4().hex[:10]}_"
    x = _data()
    eng = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as c:
        c.exec_driver_sql(_OLD.format(p=p, ts="TIMESTAMPTZ"))
        _old_rows(c, p, x, pg=True)
    eng.dispose()
    s = StateDB(pg_url, prefix=p)
    try:
        _check(s, x)
    finally:
        s.drop_all()
        s.close()


class _Info:
    def __init__(self, source: str) -> None:
        self.source = source


class _Registry:
    """Just what :func:`load_baseline` reads: a version's local artifact directory."""

    def __init__(self, dirs: dict[tuple[str, str], Path]) -> None:
        self.dirs = dirs

    def get(self, pair: str, version: str) -> _Info:
        return _Info(str(self.dirs[(pair, str(version))]))


def test_drift_pass_equals_the_per_group_frame_computation(tmp_path: Path) -> None:
    """The pass slices one matrix by row position; the result must be the drift of each
    (pair, version)'s columns taken from the frame in asof_ts order, as before (JSON-equal),
    for interleaved pairs and versions and a window holding old JSON rows and packed ones."""
    from bqx.monitoring.baseline import BASELINE_FILE, parse_baseline, training_baseline
    from bqx.monitoring.run import drift_pass

    rng = np.random.default_rng(9)
    path = tmp_path / "s.db"
    eng = sa.create_engine(f"sqlite:///{path}")
    x_old = _data(300)
    with eng.begin() as c:
        c.exec_driver_sql(_OLD.format(p="", ts="DATETIME"))
        _old_rows(c, "", x_old, pg=False)  # EURUSD v1, the first 300 minutes
    eng.dispose()
    s = StateDB(f"sqlite:///{path}")
    dirs = {}
    for pair, ver, k in (("EURUSD", "1", 7), ("EURUSD", "2", 5), ("GBPUSD", "1", 6)):
        names = NAMES[:k]
        base = training_baseline(
            pd.DataFrame(rng.normal(size=(1000, k)), columns=names), names,
            rng.normal(size=1000), rng.normal(size=1000),
        )  # fmt: skip
        d = tmp_path / f"{pair}-{ver}"
        d.mkdir()
        (d / BASELINE_FILE).write_text(json.dumps(base))
        dirs[(pair, ver)] = d
        n0 = 300 if (pair, ver) == ("EURUSD", "1") else 0
        x = np.cumsum(rng.normal(size=(400, k)), axis=0) / 20 + (0.5 if ver == "2" else 0)
        s.write_captures(
            capture_row(decision_id=f"{pair}{ver}-{i}", pair=pair, model_version=ver,
                        asof_ts=T0 + pd.Timedelta(minutes=n0 + i), names=names, values=x[i])
            for i in range(400)
        )  # fmt: skip
    end = T0 + pd.Timedelta(hours=20)
    reg = _Registry(dirs)
    rep, _ = drift_pass(s, reg, end)
    # the reference: per (pair, version) group of the frame, columns as float arrays
    cap = s.read_captures(None, end - pd.Timedelta(hours=24), end)
    meta = {"decision_id", "pair", "asof_ts", "model_version"}
    ref = []
    for (p, v), g in cap.groupby(["pair", "model_version"]):
        base = parse_baseline(json.loads((dirs[(p, v)] / BASELINE_FILE).read_text()))
        r = drift_report(base, {c: g[c].to_numpy(float) for c in g.columns
                                if c not in meta and c in base})  # fmt: skip
        r.update(pair=p, model_version=v, n=len(g))
        ref.append(r)
    assert len(rep["pairs"]) == 3 and rep["pairs"][0]["n"] == 700
    assert json.dumps(rep["pairs"], sort_keys=True) == json.dumps(ref, sort_keys=True)
    # the groups dealt to forked workers: the same report and alert conditions
    one = drift_pass(s, reg, end, workers=1)
    for k in (2, 3):
        got = drift_pass(s, reg, end, workers=k)
        assert json.dumps(got[0], sort_keys=True) == json.dumps(one[0], sort_keys=True)
        assert got[1] == one[1]
    # a worker that dies without answering: its groups are computed in this process
    parent = os.getpid()

    class _DiesInChild(_Registry):
        def get(self, pair: str, version: str) -> _Info:
            if os.getpid() != parent and pair == "EURUSD":
                os._exit(3)
            return super().get(pair, version)

    died = drift_pass(s, _DiesInChild(dirs), end, workers=2)
    assert json.dumps(died[0], sort_keys=True) == json.dumps(one[0], sort_keys=True)

    # an error in a worker is the step's error, as in one process
    class _Fails(_Registry):
        def get(self, pair: str, version: str) -> _Info:
            raise ValueError(f"registry down for {pair}")

    for k in (1, 2):
        with pytest.raises(ValueError, match="registry down"):
            drift_pass(s, _Fails(dirs), end, workers=k)
    s.close()


def test_parsed_baselines_are_cached_and_invalidated(tmp_path: Path, monkeypatch) -> None:
    """The pass's parsed-baseline cache gives what parsing gives, is used (no parsing when
    warm), is invalidated when the baseline file is rewritten, and survives a corrupt
    cache file."""
    import bqx.monitoring.baseline as B
    from bqx.monitoring.run import parsed_baseline

    rng = np.random.default_rng(3)
    d = tmp_path / "EURUSD-1"
    d.mkdir()

    def write(shift: float) -> str:
        names = NAMES[:4]
        base = B.training_baseline(
            pd.DataFrame(rng.normal(size=(600, 4)) + shift, columns=names), names,
            rng.normal(size=600), rng.normal(size=600),
        )  # fmt: skip
        (d / B.BASELINE_FILE).write_text(json.dumps(base))
        return json.dumps({k: v.as_dict() for k, v in B.parse_baseline(base).items()})

    def js(b: dict) -> str:
        return json.dumps({k: v.as_dict() for k, v in b.items()})

    reg, cache = _Registry({("EURUSD", "1"): d}), tmp_path / "cache"
    ref = write(0.0)
    assert js(parsed_baseline(reg, "EURUSD", "1", cache)) == ref  # cold: parsed, stored
    assert len(list(cache.glob("*.pkl"))) == 1
    real_load = B.load_baseline
    monkeypatch.setattr(B, "load_baseline", lambda *a: (_ for _ in ()).throw(AssertionError))
    assert js(parsed_baseline(reg, "EURUSD", "1", cache)) == ref  # warm: not parsed
    monkeypatch.setattr(B, "load_baseline", real_load)
    ref2 = write(1.0)  # rewritten (bqx monitor baseline): a new key
    st = (d / B.BASELINE_FILE).stat()
    os.utime(d / B.BASELINE_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ref2 != ref and js(parsed_baseline(reg, "EURUSD", "1", cache)) == ref2
    assert len(list(cache.glob("*.pkl"))) == 2
    for f in cache.glob("*.pkl"):
        f.write_bytes(b"not a pickle")
    assert js(parsed_baseline(reg, "EURUSD", "1", cache)) == ref2  # corrupt: parsed again
