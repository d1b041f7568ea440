"""Paper trading: live-path decisions, backtest parity, exact resume after kill -9, bad input.

One trained project home per module: 6 simulated days of all 28 pairs (cross-pair features
need them) and ridge models in production for EURUSD and USDJPY. GBPUSD has no model: its
paper decisions must be HOLD with the reason, never a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqx.config import Settings
from bqx.errors import NoDataError

TRAINED = ("EURUSD", "USDJPY")
PAIRS = "EURUSD,USDJPY,GBPUSD"
THRESHOLD = 1e-6  # any view trades: the (shrunk) ridge forecasts are small
TIMEOUT = 15


def _settings(home: Path) -> Settings:
    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.signals.threshold = THRESHOLD
    s.backtest.timeout_bars = TIMEOUT  # more, shorter trades in a few hours
    return s


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(
        BQX_HOME=str(home),
        BQX_SIGNALS__THRESHOLD=str(THRESHOLD),
        BQX_BACKTEST__TIMEOUT_BARS=str(TIMEOUT),
    )
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.Timestamp]:
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    home = tmp_path_factory.mktemp("paper") / "home"
    s = _settings(home)
    s.ensure_home()
    bars = generate(days=6, pairs=None, seed=11, signal_strength=0.3).bars
    store = open_store(settings=s)
    store.upsert(bars)
    store.close()
    reg = Registry(s)
    for pair in TRAINED:
        df = F.build(bars, pair, with_target=True)
        r = train_frame(pair, df, s, model="ridge", selection_rows=3000, n_jobs=1)
        reg.promote(pair, reg.log_and_register(r), actor="fixture", reason="test")
    # replay the last trading hours of the data
    last = pd.Timestamp(bars["ts"].max())
    return home, last


@pytest.fixture
def home(trained: tuple[Path, pd.Timestamp], tmp_path: Path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(trained[0], dst)
    return dst


def _window(trained: tuple[Path, pd.Timestamp], hours: float) -> tuple[pd.Timestamp, pd.Timestamp]:
    last = trained[1]
    return last - pd.Timedelta(hours=hours) + pd.Timedelta(minutes=1), last


def _bqx(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "bqx")
    r = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr + r.stdout
    return r


def test_replay_trades_equal_a_backtest_of_its_decisions(trained, home: Path, tmp_path: Path):
    """Parity: the persisted paper account equals `bqx backtest --signals` on the decisions
    the session logged, trade for trade, P&L to 1e-9; and GBPUSD (no model) holds."""
    import json

    from bqx.paper import PaperSession, compare_session, compare_version_backtest, create_session

    s = _settings(home)
    t0, t1 = _window(trained, 3)
    create_session(s, "parity", PAIRS, start=t0, end=t1)
    sess = PaperSession(s, "parity", settle_every=45)
    out = sess.run()
    assert out["status"] == "finished" and out["bars"] > 150
    cmp = compare_session(sess)
    assert cmp["identical"], cmp["first_difference"]
    assert cmp["trades_matched"] == cmp["paper_trades"] > 5
    assert cmp["max_abs_pnl_diff"] <= 1e-9
    # the same versions on batch-built features: the forecasts are the live ones (batch =
    # online parity), so whatever differs comes from the live path's signal layer
    vb = compare_version_backtest(sess)
    assert set(vb["versions"]) == set(TRAINED) and vb["bars_compared"] > 300
    assert vb["max_abs_prediction_diff"] <= 1e-9
    # no rollout, every input valid, regime scaling changes strength not side: same trades
    assert vb["signal_agreement"] == 1.0 and abs(vb["equity_diff"]) <= 1e-9
    assert vb["version_backtest_trades"] == vb["trades_in_both"] == cmp["paper_trades"]
    st = sess.status()
    assert st["trades_closed"] > 5 and st["equity"] != st["capital"]
    d = sess.state.read_decisions("GBPUSD")
    assert len(d) > 150 and set(d["signal"]) == {"HOLD"}
    assert set(d["signal_reason"]) == {"no_production_model"}
    sess.close()

    # the same decisions through the public CLI: export, then `bqx backtest --signals`
    env = _env(home)
    sig = tmp_path / "signals.parquet"
    _bqx("paper", "export", "--name", "parity", "--out", str(sig), env=env)
    # the default [risk] limits (25 % of equity per position) bind the 100 % sizing: the
    # export carries the caps the CLI backtest below must apply to match
    assert pd.read_parquet(sig)["max_notional"].notna().sum() >= 2
    settled = pd.Timestamp(st["settled"]).isoformat()
    out_dir = tmp_path / "bt"
    r = _bqx(
        "backtest", "--signals", str(sig), "--pairs", "EURUSD,USDJPY", "--start",
        t0.isoformat(), "--end", settled, "--out", str(out_dir), "--json", env=env,
    )  # fmt: skip
    json.loads(r.stdout)
    bt = pd.read_csv(out_dir / "trades.csv")
    paper = sess.state.read_paper_trades("parity")
    closed = paper[~paper["is_open"].astype(bool)]
    bt_closed = bt[bt["exit_reason"] != "end"]
    assert len(bt_closed) == len(closed)
    assert len(bt) == len(paper)
    got = closed.sort_values(["entry_ts", "pair"])["net_pnl"].to_numpy()
    bt_closed = bt_closed.assign(entry_ts=pd.to_datetime(bt_closed["entry_ts"], utc=True))
    want = bt_closed.sort_values(["entry_ts", "pair"])["net_pnl"].to_numpy()
    # trades.csv prints P&L with pandas' default float format (17 significant digits)
    assert abs(got - want).max() <= 1e-9

    rc = _bqx("paper", "compare", "--name", "parity", "--json", env=env)
    got_cmp = json.loads(rc.stdout)
    assert got_cmp["identical"] is True
    assert got_cmp["version_backtest"]["signal_agreement"] == vb["signal_agreement"]


def test_compare_names_the_first_difference(trained, home: Path):
    """A tampered fill is found and named (the check can fail)."""
    import sqlalchemy as sa

    from bqx.paper import PaperSession, compare_session, create_session

    s = _settings(home)
    t0, t1 = _window(trained, 2)
    create_session(s, "tamper", "EURUSD,USDJPY", start=t0, end=t1)
    sess = PaperSession(s, "tamper")
    sess.run()
    tr = sess.state.t.paper_trades
    with sess.state.engine.begin() as conn:
        first = conn.execute(
            sa.select(tr.c.pair, tr.c.entry_ts)
            .where(tr.c.is_open.is_(False))
            .order_by(tr.c.entry_ts)
        ).first()
        assert first is not None
        conn.execute(
            tr.update()
            .where(tr.c.pair == first[0], tr.c.entry_ts == first[1])
            .values(net_pnl=tr.c.net_pnl + 1e-6)
        )
    cmp = compare_session(sess)
    assert not cmp["identical"]
    assert cmp["first_difference"]["field"] == "net_pnl"
    assert cmp["first_difference"]["pair"] == first[0]
    sess.close()


def test_kill_9_then_resume_is_exact(trained, home: Path):
    """kill -9 mid-replay, resume: the account equals an uninterrupted session's, with no
    duplicate or lost decision or fill."""
    from bqx.paper import PaperSession, compare_session, create_session
    from bqx.state import open_state

    s = _settings(home)
    env = _env(home)
    t0, t1 = _window(trained, 2)
    exe = str(Path(sys.executable).parent / "bqx")
    proc = subprocess.Popen(
        [exe, "paper", "start", "--name", "crash", "--pairs", "EURUSD,USDJPY", "--start",
         t0.isoformat(), "--end", t1.isoformat(), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    state = open_state(s)
    deadline = time.monotonic() + 120
    while True:
        row = state.get_paper_session("crash")
        if (
            row is not None
            and row["cursor_ts"] is not None
            and row["settled_ts"] is not None
            and pd.Timestamp(row["cursor_ts"]) >= t0 + pd.Timedelta(minutes=50)
        ):
            break
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "paper session did not progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = pd.Timestamp(state.get_paper_session("crash")["cursor_ts"])
    assert killed_at < t1

    r = _bqx("paper", "resume", "--name", "crash", "--json", env=env)
    assert '"finished"' in r.stdout

    create_session(s, "straight", "EURUSD,USDJPY", start=t0, end=t1)
    ref = PaperSession(s, "straight")
    ref.run()
    crashed = PaperSession(s, "crash")
    assert compare_session(crashed)["identical"]
    cols = ["pair", "side", "entry_ts", "exit_ts", "exit_reason", "size", "net_pnl", "is_open"]
    a = state.read_paper_trades("crash")[cols].reset_index(drop=True)
    b = state.read_paper_trades("straight")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) >= 2
    dec = state.read_decisions(["EURUSD", "USDJPY"], t0, t1, by="asof_ts")
    sess_of = dec["extra"].map(lambda x: x.get("session"))
    n_crash, n_straight = int((sess_of == "crash").sum()), int((sess_of == "straight").sum())
    assert n_crash == n_straight > 200
    # the risk caps (default [risk]: 25 % of equity per position binds the 100 % sizing)
    # are logged identically by the resumed and the uninterrupted session
    from bqx.paper import session_signals

    caps = [
        session_signals(state, n, ["EURUSD", "USDJPY"], t0, t1)[["pair", "ts", "signal",
                                                                  "max_notional"]]
        for n in ("crash", "straight")
    ]  # fmt: skip
    pd.testing.assert_frame_equal(caps[0], caps[1])
    assert caps[0]["max_notional"].notna().sum() >= 2
    crashed.close()
    ref.close()


def test_bad_input(trained, home: Path):
    from bqx.paper import PaperError, PaperSessionExists, create_session

    s = _settings(home)
    t0, t1 = _window(trained, 1)
    with pytest.raises(NoDataError, match="no bars"):
        create_session(s, "empty", "EURUSD", start="2001-01-01", end="2001-01-02")
    create_session(s, "dup", "EURUSD", start=t0, end=t1)
    with pytest.raises(PaperSessionExists, match="exists"):
        create_session(s, "dup", "EURUSD", start=t0, end=t1)
    with pytest.raises(PaperError, match="--end"):
        create_session(s, "noend", "EURUSD", start=t0)
    with pytest.raises(PaperError, match="invalid session name"):
        create_session(s, "../x", "EURUSD", start=t0, end=t1)
    r = _bqx("paper", "start", "--name", "dup", "--pairs", "EURUSD", "--start",
             t0.isoformat(), "--end", t1.isoformat(), env=_env(home), check=False)  # fmt: skip
    assert r.returncode != 0 and "exists" in r.stderr and "Traceback" not in r.stderr
    r = _bqx("paper", "status", "--name", "nope", env=_env(home), check=False)
    assert r.returncode != 0 and "no paper session" in r.stderr


def test_risk_limits_cap_or_hold_paper_orders_and_parity_holds(trained, home: Path):
    """The risk manager's allowed quantity sizes paper orders: a tight position limit makes
    every trade smaller (same timing) and a backtest of the logged decisions still equals the
    account to 1e-9; a limit no order can pass turns BUY/SELL into HOLD with the reason;
    limits that never bind leave the account exactly as without the risk check."""
    from bqx.paper import PaperSession, compare_session, create_session, session_signals

    t0, t1 = _window(trained, 1)
    pairs = ["EURUSD", "USDJPY"]

    def run(name: str, risk: bool = True, bars: int | None = None, **limits: float):
        s = _settings(home)
        for k, v in limits.items():
            setattr(s.risk, k, v)
        create_session(s, name, pairs, start=t0, end=t1, risk=risk)
        sess = PaperSession(s, name, settle_every=20)
        sess.run(max_bars=bars)
        trades = sess.state.read_paper_trades(name).sort_values(["entry_ts", "pair"])
        sig = session_signals(sess.state, name, pairs, t0, t1)
        d = sess.state.read_decisions(pairs, t0, t1, by="asof_ts")
        d = d[[x.get("session") == name for x in d["extra"]]]
        return sess, trades.reset_index(drop=True), sig, d

    base, tb, sig_b, _ = run("norisk", risk=False)
    assert len(tb) >= 3 and sig_b["max_notional"].isna().all()

    # (a) 5 % of equity per position binds the 100 % fixed sizing on every order
    tight, tt, sig_t, d_t = run("tight", max_position_frac=0.05)
    cmp = compare_session(tight)
    assert cmp["identical"], cmp["first_difference"]
    assert cmp["trades_matched"] == len(tt) == len(tb)
    assert cmp["max_abs_pnl_diff"] <= 1e-9
    timing = ["pair", "side", "entry_ts", "exit_ts", "exit_reason"]
    pd.testing.assert_frame_equal(tt[timing], tb[timing])  # caps change money, not timing
    assert (tt["size"] < 0.06 * tb["size"]).all() and (tt["size"] > 0).all()
    risk = [x["risk"] for x in d_t["extra"] if "risk" in x]
    assert len(risk) >= len(tt)
    for r in risk:  # whole base units within 5 % of the equity the check saw
        assert 0 < r["max_notional"] <= 0.05 * r["equity"] * (1 + 1e-12)
        assert r["allowed_quantity"] < r["requested_quantity"]
        assert r["limits"] == ["POSITION_LIMIT"]
    cap_of = sig_t.set_index(["pair", "ts"])["max_notional"]
    caps = [
        cap_of[(p, pd.Timestamp(ts))] for p, ts in zip(tt["pair"], tt["signal_ts"], strict=True)
    ]
    assert (tt["size"].to_numpy() <= np.asarray(caps) + 1e-9).all()
    # the backtest of the logged decisions (what `bqx backtest --signals` runs on the
    # export) gives the same trades; without the cap column it would not
    from bqx.backtest.engine import run as backtest

    bars = tight.store.read(pairs, t0, tight.status()["settled"])
    again = backtest(bars, sig_t, tight.config).trades
    # a trade still open when the session ends is open in the account (no P&L yet) and
    # "end" in the backtest (marked at the last bar): same trades, same sizes, same P&L
    # for every closed one
    still_open = tt["is_open"].astype(bool).to_numpy()
    assert (again["exit_reason"].to_numpy() == "end").tolist() == still_open.tolist()
    np.testing.assert_allclose(again["size"], tt["size"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        again["net_pnl"][~still_open], tt["net_pnl"][~still_open], rtol=0, atol=1e-9
    )
    uncapped = backtest(bars, sig_t.drop(columns="max_notional"), tight.config).trades
    assert np.abs(uncapped["size"] - tt["size"]).max() > 1000.0
    # the account the risk check kept in memory is the one the log gives
    last = pd.Timestamp(tight.status()["cursor"])
    mem = tight._account(last).trades
    pd.testing.assert_frame_equal(mem, tight.backtest(last, before=last).trades)

    # a position limit no whole unit passes: every order is held with the reason
    held, th, _, d_h = run("held", bars=15, max_position_frac=1e-9)
    assert len(th) == 0 and compare_session(held)["identical"]
    acted = d_h[[("risk" in x) for x in d_h["extra"]]]
    assert len(acted) >= 1 and set(acted["signal"]) == {"HOLD"}
    assert set(acted["signal_reason"]) == {"risk_position_limit"}
    assert {x["risk"]["signal"] for x in acted["extra"]} <= {"BUY", "SELL"}

    # (b) limits that never bind: the same account as without the risk check, exactly
    loose = {k: 1e6 for k in ("max_position_frac", "max_currency_net_frac", "max_leverage",
                              "max_daily_loss_frac", "max_var_frac")}  # fmt: skip
    free, tf, sig_f, d_f = run("loose", **loose)
    assert any("risk" in x for x in d_f["extra"])  # the check ran ...
    assert sig_f["max_notional"].isna().all()  # ... and capped nothing
    cols = [*timing, "size", "net_pnl", "is_open"]
    pd.testing.assert_frame_equal(tf[cols], tb[cols])
    for x in (base, tight, held, free):
        x.close()
