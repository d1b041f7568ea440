"""A paper-trading session: the live decision path bar by bar, the backtest engine as broker.

Life of a session (all state in the state database, so any process can pick it up):

1. :func:`create_session` stores its definition: pairs, feed (``replay`` of stored bars or
   ``push`` = follow new bars), window, speed and the ``[backtest]`` cost model frozen at
   creation (a later settings change does not alter a running account).
2. :meth:`PaperSession.run` claims the session (one runner at a time: ``owner`` plus a
   heartbeat), then per bar ``t``:

   * the API's :class:`~bqx.serving.cache.BarCache` is refreshed from the store exactly as a
     running server picks up bars written by others - in replay mode through
     :class:`ReplayStore`, a view of the store that ends at ``t``, so nothing after ``t`` is
     visible (no lookahead by construction);
   * :meth:`~bqx.serving.service.PredictionService.predict` answers for every pair that has
     a bar at ``t`` (online features, production model, intervals, signals); a pair that
     cannot be served (no production model, stale or missing data) gets a HOLD decision
     with the reason, never a crash;
   * the risk manager sizes the orders (:meth:`PaperSession._size_by_risk`): the paper
     account at the close of ``t`` is the :class:`~bqx.decision.risk.RiskEngine` portfolio,
     its allowed quantity caps each order (logged as the decision's ``max_notional``, which
     the backtest engine applies: parity holds with the caps), 0 turns it into a HOLD;
   * the decisions and the new cursor are written in one transaction (deterministic decision
     ids: a bar re-run after ``kill -9`` writes nothing twice);
   * every ``settle_every`` bars (and at the end) the broker settles: the backtest engine on
     the session's bars up to ``t`` and its logged decisions; closed trades are appended
     (never rewritten), open positions replaced, the equity marked - one transaction.

3. :func:`compare_session` re-runs the backtest of the logged decisions independently and
   compares it with the persisted account trade by trade (``bqx paper compare``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import to_utc
from bqx.config import Settings
from bqx.errors import BqxError, ModelNotFoundError, NoDataError
from bqx.universe import normalize_pairs

log = logging.getLogger(__name__)

FEEDS = ("replay", "push")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NS = uuid.UUID("5b0c3f1e-6a43-4c55-9d57-2f7f1f0a9e11")
#: A runner whose heartbeat is older than this is presumed dead (``resume`` may take over).
STALE_S = 30.0
#: Fields compared trade by trade; money to ``PNL_TOL`` (account currency).
COMPARED = (
    "side",
    "signal_ts",
    "entry_price",
    "exit_ts",
    "exit_price",
    "exit_reason",
    "size",
    "spread_cost",
    "slippage_cost",
    "commission",
    "net_pnl",
)
PNL_TOL = 1e-9


class PaperError(BqxError):
    """A paper session cannot be created, run or read as asked."""


class PaperSessionExists(PaperError):
    """A paper session with that name exists (HTTP 409 / exit code 1)."""


def decision_id(session: str, pair: str, ts: pd.Timestamp) -> str:
    """Deterministic id of a session's decision for ``pair`` at bar ``ts`` (idempotent
    re-runs after a crash)."""
    return str(uuid.uuid5(_NS, f"paper|{session}|{pair}|{ts.value}"))


# ---------------------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------------------
def create_session(
    settings: Settings,
    name: str,
    pairs: Sequence[str] | str,
    *,
    feed: str = "replay",
    start: Any,
    end: Any = None,
    speed: float = 0.0,
    state: Any = None,
    store: Any = None,
    risk: bool = True,
) -> dict[str, Any]:
    """Define a session; raises :class:`PaperSessionExists` if ``name`` is taken and
    :class:`~bqx.errors.NoDataError` when a replay window has no bars.

    ``risk``: size orders by the risk manager's allowed quantity (the ``[risk]`` limits,
    frozen at creation like the cost model); ``False`` trades the backtest sizing alone."""
    from bqx.backtest.engine import config_from_settings

    if not _NAME.fullmatch(name or ""):
        raise PaperError(
            f"invalid session name {name!r}",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if feed not in FEEDS:
        raise PaperError(f"--feed must be one of {', '.join(FEEDS)}, got {feed!r}")
    plist = normalize_pairs(pairs)
    t0 = to_utc(start)
    t1 = to_utc(end) if end is not None else None
    if feed == "replay" and t1 is None:
        raise PaperError("a replay needs --end", hint="give the last bar time to replay")
    if t1 is not None and t1 <= t0:
        raise PaperError(f"--end {t1.isoformat()} is not after --start {t0.isoformat()}")
    if speed < 0 or not math.isfinite(speed):
        raise PaperError(f"--speed must be >= 0 (0 = as fast as possible), got {speed}")
    cfg = config_from_settings(settings.backtest, settings.horizon)
    state = state if state is not None else _state(settings)
    if feed == "replay":
        assert t1 is not None
        own = store is None
        store = store if store is not None else _store(settings)
        try:
            bars = store.read(plist, t0, t1)
        finally:
            if own:
                store.close()
        if bars.empty:
            raise NoDataError(
                f"no bars for {', '.join(plist)} between {t0.isoformat()} and {t1.isoformat()}",
                hint="pick a window with stored bars (`bqx data info`)",
            )
    created = state.create_paper_session(
        {
            "name": name,
            "pairs": ",".join(plist),
            "feed": feed,
            "start_ts": t0,
            "end_ts": t1,
            "speed": float(speed),
            "config": {
                **cfg.as_dict(),
                "risk": settings.risk.model_dump(mode="json") if risk else None,
            },
            "equity": cfg.capital,
        }
    )
    if not created:
        raise PaperSessionExists(
            f"a paper session named {name!r} exists",
            hint=f"pick another --name, continue it with `bqx paper resume --name {name}`, or "
            f"remove it with `bqx paper delete --name {name}`",
        )
    return state.get_paper_session(name)


def _state(settings: Settings) -> Any:
    from bqx.state import open_state

    return open_state(settings)


def _store(settings: Settings) -> Any:
    from bqx.data.store import open_store

    return open_store(settings=settings)


# ---------------------------------------------------------------------------------------
# a view of the store that ends at the replay clock
# ---------------------------------------------------------------------------------------
class ReplayStore:
    """Read-only view of a bar store that shows only bars at or before :attr:`clock`.

    The serving path reads the store through it exactly as it reads the real one; moving the
    clock forward one bar at a time *is* the replayed feed."""

    def __init__(self, store: Any, clock: pd.Timestamp) -> None:
        self.inner = store
        self.clock = clock

    def _cap(self, t: Any) -> pd.Timestamp:
        return self.clock if t is None else min(to_utc(t), self.clock)

    def change_token(self) -> Any:
        """None: this view changes when its clock moves, without any write (the bar cache
        must read)."""
        return None

    def latest(self, pairs: Any = None) -> dict[str, pd.Timestamp]:
        return {p: min(t, self.clock) for p, t in self.inner.latest(pairs).items()}

    def read(self, pairs: Any = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        if start is not None and to_utc(start) > self.clock:
            return self.inner.read(pairs, self.clock, self.clock).iloc[0:0]
        return self.inner.read(pairs, start, self._cap(end))

    def read_asof(self, ts: Any, n: int, pairs: Any = None) -> pd.DataFrame:
        return self.inner.read_asof(self._cap(ts), n, pairs)

    def upsert(self, *_a: Any, **_k: Any) -> Any:
        raise PaperError("a replay is read-only: bars cannot be written through it")

    def close(self) -> None:
        """The inner store belongs to the session."""


# ---------------------------------------------------------------------------------------
# the session
# ---------------------------------------------------------------------------------------
@dataclass
class StepInfo:
    bars: int
    decisions: int
    settled: int
    seconds: float


class PaperSession:
    """Runs and reads one stored session. Create it with :func:`create_session` first."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        state: Any = None,
        store: Any = None,
        registry: Any = None,
        settle_every: int = 60,
    ) -> None:
        self.settings = settings
        self.name = name
        self.state = state if state is not None else _state(settings)
        row = self.state.get_paper_session(name)
        if row is None:
            raise PaperError(
                f"no paper session named {name!r}",
                hint="list them with `bqx paper list`; create one with `bqx paper start`",
            )
        self.row = row
        self.pairs = row["pairs"].split(",")
        self.feed = row["feed"]
        self.start = pd.Timestamp(row["start_ts"])
        self.end = pd.Timestamp(row["end_ts"]) if row["end_ts"] is not None else None
        self.speed = float(row["speed"])
        from bqx.backtest.engine import BacktestConfig
        from bqx.config import RiskSettings

        conf = dict(row["config"])
        risk = conf.pop("risk", None)  # sessions created before risk sizing have none
        self.config = BacktestConfig(**conf)
        #: the ``[risk]`` limits frozen at creation (None: orders are not risk-checked)
        self.risk: RiskSettings | None = RiskSettings(**risk) if risk else None
        self._risk_market: tuple[pd.Timestamp, Any] | None = None
        #: the account the risk check sees, kept in memory (read once, then extended): the
        #: session's bars read ahead a day at a time, and the decisions logged so far
        self._acct_bars: list[pd.DataFrame] = []
        self._acct_hi: pd.Timestamp | None = None
        self._acct_sig: dict[str, list[Any]] | None = None
        self._own_store = store is None
        self.store = store if store is not None else _store(settings)
        self.registry = registry
        self.settle_every = max(1, int(settle_every))
        self.interval = pd.Timedelta(settings.interval)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        #: pairs without a production model, re-checked every ``serve.alias_ttl_s`` seconds
        #: (as the API's model cache re-checks aliases), not on every bar
        self._no_model: dict[str, tuple[float, BqxError]] = {}
        self._no_model_ttl = float(settings.serve.alias_ttl_s)

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    # -- running ----------------------------------------------------------------------
    def run(
        self,
        *,
        max_bars: int | None = None,
        poll_s: float = 1.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Run until the replay window ends, ``max_bars`` bars are done, or someone asks the
        session to stop (``bqx paper stop``). Resumes after the stored cursor."""
        self._release_if_dead_here()
        holder = self.state.claim_paper_session(self.name, self.owner, stale_s=STALE_S)
        if holder is not None:
            raise PaperError(
                f"paper session {self.name!r} is being run by {holder}",
                hint=f"stop it first (`bqx paper stop --name {self.name}`) or wait "
                f"{STALE_S:g} s after that runner died",
            )
        from bqx.serving.service import PredictionService

        cursor = self._cursor()
        clock = cursor if cursor is not None else self.start - self.interval
        view: Any = ReplayStore(self.store, clock) if self.feed == "replay" else self.store
        svc = PredictionService(
            self.settings, live=True, store=view, registry=self.registry, state=self.state,
            log_decisions=False,
        )  # fmt: skip
        assert svc.bars is not None
        svc.bars.load()
        t_start = time.perf_counter()
        done = decisions = since_settle = 0
        status = "running"
        try:
            while True:
                todo, revealed = self._pending_bars(cursor)
                if progress is not None and self.feed == "replay":
                    progress(done, done + len(todo))
                rts = (
                    revealed["ts"].to_numpy("datetime64[ns]").view("i8")
                    if revealed is not None
                    else None
                )
                shown = 0
                for ts in todo:
                    if isinstance(view, ReplayStore) and revealed is not None and rts is not None:
                        # the replayed feed: bars of all pairs up to ts arrive, exactly as
                        # POST /v1/bars hands them to a running server's cache
                        view.clock = ts
                        upto = int(np.searchsorted(rts, ts.value, side="right"))
                        if upto > shown:
                            svc.bars.apply(revealed.iloc[shown:upto])
                            shown = upto
                    else:
                        svc.bars.refresh()  # bars written by others (POST /v1/bars, ingest)
                    rows = self._decide(svc, ts)
                    if self.risk is not None:
                        self._size_by_risk(svc, rows, ts)
                    decisions += self.state.paper_step(self.name, rows, ts)
                    if self._acct_sig is not None:
                        self._remember(rows)
                    cursor = ts
                    done += 1
                    since_settle += 1
                    if since_settle >= self.settle_every or self.feed == "push":
                        self.settle(ts)
                        since_settle = 0
                    if progress is not None and self.feed == "replay":
                        progress(done, done + len(todo))
                    if self.speed > 0:
                        time.sleep(self.interval.total_seconds() / self.speed)
                    if done % 20 == 0 and self._stop_requested():
                        status = "stopped"
                        break
                    if max_bars is not None and done >= max_bars:
                        status = "running"
                        break
                if status == "stopped" or (max_bars is not None and done >= max_bars):
                    break
                if self._stop_requested():
                    status = "stopped"
                    break
                if self.feed == "replay":
                    if not todo:
                        status = "finished"
                        break
                    continue
                if self.end is not None and cursor is not None and cursor >= self.end:
                    status = "finished"
                    break
                time.sleep(poll_s)
                self.state.update_paper_session(self.name, heartbeat_at=pd.Timestamp.now(tz="UTC"))
        except BaseException as e:
            if cursor is not None and since_settle:
                try:
                    self.settle(cursor)
                except Exception:  # pragma: no cover - best effort on the way out
                    log.exception("paper %s: settlement on exit failed", self.name)
            if not isinstance(e, KeyboardInterrupt):
                self.state.update_paper_session(self.name, status="failed", message=str(e)[:500])
            else:
                self.state.update_paper_session(self.name, status="stopped", owner=None)
            raise
        if cursor is not None and since_settle:
            self.settle(cursor)
        final = "running" if status == "running" else status
        self.state.update_paper_session(
            self.name, status=final if final != "running" else "stopped", owner=None
        )
        secs = time.perf_counter() - t_start
        return {
            "name": self.name,
            "status": final if final != "running" else "stopped",
            "bars": done,
            "decisions_written": decisions,
            "seconds": secs,
            "bars_per_s": done / secs if secs > 0 else None,
            "cursor": cursor,
        }

    def _release_if_dead_here(self) -> None:
        """A runner on this host whose process is gone (``kill -9``) holds nothing: clear it
        at once instead of waiting :data:`STALE_S` for its heartbeat to age."""
        row = self.state.get_paper_session(self.name)
        owner = (row or {}).get("owner") or ""
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
            return
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            self.state.update_paper_session(self.name, owner=None)
        except PermissionError:  # alive, another user's
            return

    def _cursor(self) -> pd.Timestamp | None:
        row = self.state.get_paper_session(self.name)
        return pd.Timestamp(row["cursor_ts"]) if row and row["cursor_ts"] is not None else None

    def _stop_requested(self) -> bool:
        row = self.state.get_paper_session(self.name)
        return row is not None and row["status"] == "stopping"

    def _pending_bars(
        self, cursor: pd.Timestamp | None
    ) -> tuple[list[pd.Timestamp], pd.DataFrame | None]:
        """Bar times of the session's pairs after ``cursor`` (within the window; at most a
        day at a time) and, for a replay, the bars of *all* pairs in that span (cross-pair
        features need them), sorted by time."""
        lo = self.start if cursor is None else cursor + pd.Timedelta(microseconds=1)
        hi = self.end
        if self.feed == "replay":
            assert hi is not None
            while lo <= hi:
                chunk_end = min(hi, lo + pd.Timedelta(days=1))
                everything = self.store.read(None, lo, chunk_end)
                mine = everything[everything["pair"].isin(self.pairs)]
                if len(mine):
                    everything = everything.sort_values(["ts", "pair"], kind="stable")
                    ts = pd.DatetimeIndex(mine["ts"]).unique().sort_values()
                    # reveal nothing past the last session bar of this chunk
                    last = ts[-1]
                    everything = everything[everything["ts"] <= last].reset_index(drop=True)
                    return list(ts), everything
                lo = chunk_end + pd.Timedelta(microseconds=1)
            return [], None
        if hi is not None and lo > hi:
            return [], None
        bars = self.store.read(self.pairs, lo, hi)
        if bars.empty:
            return [], None
        return list(pd.DatetimeIndex(bars["ts"]).unique().sort_values()), None

    def _decide(self, svc: Any, ts: pd.Timestamp) -> list[dict[str, Any]]:
        """One decision per pair that has a bar at ``ts``, through the serving path."""
        from bqx.registry import model_name

        snap = svc.bars.snapshot
        rows: list[dict[str, Any]] = []
        decided_at = (ts + self.interval).to_pydatetime()  # the bar's close
        for pair in self.pairs:
            try:
                missing = self._no_model.get(pair)
                if missing is not None and time.monotonic() - missing[0] < self._no_model_ttl:
                    raise missing[1]
                try:
                    # as of the bar's close: the API's historical timestamps select the
                    # last bar that has *closed* by T, so asking at the close selects bar ts
                    pred = svc.predict(
                        pair, timestamp=ts + self.interval, log=False, source="paper"
                    )
                except ModelNotFoundError as e:
                    self._no_model[pair] = (time.monotonic(), e)
                    raise
            except BqxError as e:
                if not _has_bar(snap, pair, ts):
                    continue
                code = getattr(e, "code", None) or _reason(e)
                rows.append(
                    {
                        "decision_id": decision_id(self.name, pair, ts),
                        "request_time": decided_at,
                        "pair": pair,
                        "asof_ts": ts.to_pydatetime(),
                        "horizon": self.settings.horizon,
                        "prediction": None,
                        "signal": "HOLD",
                        "signal_strength": 0.0,
                        "signal_reason": code,
                        "model_name": model_name(pair),
                        "extra": {"source": "paper", "session": self.name, "error": e.message},
                    }
                )
                continue
            if pred.timestamp != ts:  # no bar of this pair at ts (a gap): nothing to decide
                continue
            row = svc.decision_row(pred, key_id=None, request_time=decided_at, source="paper")
            row["decision_id"] = decision_id(self.name, pair, ts)
            row["extra"]["session"] = self.name
            rows.append(row)
        return rows

    # -- the risk manager -------------------------------------------------------------
    def _size_by_risk(self, svc: Any, rows: list[dict[str, Any]], ts: pd.Timestamp) -> None:
        """Cap each order of bar ``ts`` at the risk manager's allowed quantity (in place).

        The paper account as of the close of ``ts`` (the backtest engine on the session's
        bars up to ``ts`` and its decisions before ``ts``: open positions, equity marked at
        the close, today's realised P&L) becomes the :class:`~bqx.decision.risk.RiskEngine`
        portfolio; for a BUY/SELL that would open a position (the pair is flat, or holds the
        opposite side and ``reverse`` is on) the engine answers the largest quantity of that
        side passing every ``[risk]`` limit at the bar's close. The answer is logged in the
        decision's ``extra["risk"]``; when it is below the largest order the sizing could ask
        for (``max_leverage`` x equity) its notional becomes the decision's ``max_notional``,
        the per-trade cap the backtest engine applies (so a backtest of the logged decisions
        sizes as the paper account did). An allowed quantity of 0 turns the decision into a
        HOLD with the reason ``risk_<limit>`` (e.g. ``risk_position_limit``). Orders of the
        same bar are checked in pair order, each against the account plus the earlier ones
        (at ``min(cap, fraction x equity)``, the fixed sizing's notional). When the account
        cannot be priced (no bars of a pair needed to convert to the account currency) the
        orders are HOLD with ``risk_unavailable``: an order the risk manager cannot check is
        not sent.
        """

        from bqx.decision.risk import RiskInputError

        acts = [r for r in rows if r["signal"] in ("BUY", "SELL")]
        if not acts:
            return
        try:
            self._cap_orders(svc, acts, ts)
        except RiskInputError as e:  # cannot price or risk the account: fail closed
            for row in acts:
                row["extra"]["risk"] = {"signal": row["signal"], "error": e.message}
                row["signal"] = "HOLD"
                row["signal_strength"] = 0.0
                row["signal_reason"] = "risk_unavailable"

    def _cap_orders(self, svc: Any, acts: list[dict[str, Any]], ts: pd.Timestamp) -> None:
        from bqx.decision.risk import RiskEngine, usd_value
        from bqx.state.positions import Portfolio

        assert self.risk is not None
        market = self._market_at(svc, ts)
        res = self._account(ts)
        prices = market.prices
        acct = self.risk.account_currency

        def v(c: str) -> float:
            return usd_value(c, prices) / usd_value(acct, prices)

        held: dict[str, int] = {}  # pair -> side of its open trade (also size-0 trades)
        positions: dict[str, tuple[float, float]] = {}
        equity = self.config.capital
        realized_today = 0.0
        if res is not None:
            tr = res.trades
            is_open = (tr["exit_reason"] == "end").to_numpy()
            for r in tr[is_open].to_dict("records"):
                held[r["pair"]] = int(r["side"])
                if r["size"] > 0:
                    q = r["side"] * r["size"] / (r["entry_price"] * v(r["pair"][3:]))
                    positions[r["pair"]] = (float(q), float(r["entry_price"]))
            equity = float(res.equity["equity"].iloc[-1])
            closed = tr[~is_open]
            if len(closed):
                day = pd.DatetimeIndex(pd.to_datetime(closed["exit_ts"], utc=True)).normalize()
                realized_today = float(closed["net_pnl"][day == ts.normalize()].sum())

        def unreal(p: str, q: float, avg: float) -> float:
            return q * (prices[p] - avg) * v(p[3:])

        cash = equity - sum(unreal(p, q, a) for p, (q, a) in positions.items())
        for row in acts:
            pair = row["pair"]
            side = 1 if row["signal"] == "BUY" else -1
            own = held.get(pair)
            if own == side or (own is not None and not self.config.reverse):
                continue  # the signal opens nothing (same side held, or it only exits)
            price = prices.get(pair)
            if price is None:  # no close to price the order: the backtest sizing alone
                continue
            # the order is a new position: the pair's own (opposite) one is gone by then
            pos = {p: x for p, x in positions.items() if p != pair}
            c0 = cash + (unreal(pair, *positions[pair]) if pair in positions else 0.0)
            eng = RiskEngine(self.risk, Portfolio(c0, realized_today, ts.date(), pos), market)
            per_unit = price * v(pair[3:])  # account-currency exposure of one base unit
            request = max(1, math.ceil(self.config.max_leverage * max(eng.equity, 0.0) / per_unit))
            out = eng.check(pair, row["signal"], request, price)
            allowed = int(out["allowed_quantity"])
            info: dict[str, Any] = {
                "requested_quantity": request,
                "allowed_quantity": allowed,
                "price": price,
                "equity": eng.equity,
                "max_notional": None if allowed >= request else allowed * per_unit,
            }
            if allowed < request:  # the limits that bind: those one more unit breaks
                more = eng.check(pair, row["signal"], allowed + 1, price)["reasons"]
                info["limits"] = [r["code"] for r in more] or ["EQUITY"]
            if allowed == 0 and own is None:
                info["signal"] = row["signal"]
                row["signal"] = "HOLD"
                row["signal_strength"] = 0.0
                row["signal_reason"] = f"risk_{info['limits'][0].lower()}"
            row["extra"]["risk"] = info
            if allowed > 0:  # the entry the next checks of this bar must see
                cap = info["max_notional"]
                notional = self.config.fraction * max(eng.equity, 0.0)
                if cap is not None:
                    notional = min(notional, cap)
                positions[pair] = (side * notional / per_unit, price)

    def _account(self, ts: pd.Timestamp) -> Any:
        """The backtest engine on the session's bars up to ``ts`` and its decisions before
        ``ts`` - what :meth:`backtest` computes from the store and the decision log, from
        memory (the first call reads the log; each bar's decisions are then appended)."""
        from bqx.backtest.engine import run

        if self._acct_sig is None:
            sig = session_signals(self.state, self.name, self.pairs, self.start, ts)
            sig = sig[sig["ts"] < ts]
            self._acct_sig = {c: sig[c].tolist() for c in _SIG_COLS}
        if not self._acct_sig["pair"]:
            return None
        sig = pd.DataFrame(self._acct_sig)
        sig["ts"] = pd.DatetimeIndex(sig["ts"], tz="UTC") if len(sig) else sig["ts"]
        if self._acct_hi is None or self._acct_hi < ts:
            lo = self.start if self._acct_hi is None else self._acct_hi + pd.Timedelta(1, "us")
            # a replay reads a day ahead (filtered to <= ts below: nothing later is used);
            # a live feed has nothing ahead to read
            hi = ts if self.feed != "replay" else min(ts + pd.Timedelta(days=1), self.end or ts)
            self._acct_bars.append(self.store.read(self.pairs, lo, hi))
            self._acct_hi = hi
            if len(self._acct_bars) > 1:
                self._acct_bars = [pd.concat(self._acct_bars, ignore_index=True)]
        bars = self._acct_bars[0]
        bars = bars[bars["ts"] <= ts]
        return run(bars, sig, self.config)

    def _remember(self, rows: list[dict[str, Any]]) -> None:
        """Append a bar's decisions to the in-memory account (as :func:`session_signals`
        reads them back from the log)."""
        assert self._acct_sig is not None
        for r in rows:
            self._acct_sig["pair"].append(r["pair"])
            self._acct_sig["ts"].append(pd.Timestamp(r["asof_ts"]))
            self._acct_sig["signal"].append(r["signal"])
            pred = r.get("prediction")
            self._acct_sig["prediction"].append(math.nan if pred is None else float(pred))
            self._acct_sig["max_notional"].append(_cap(r.get("extra")))

    def _market_at(self, svc: Any, ts: pd.Timestamp) -> Any:
        """The risk engine's market data at bar ``ts``: returns (VaR, covariance) of the
        last ``var_window_bars`` bars up to the hour that ``ts`` is in (refreshed once an
        hour - a live server's risk check also caches them; anchored on the clock, so a
        resumed session sees the same window), prices = each pair's last close <= ``ts``."""
        import copy

        from bqx.decision.risk import market_from_bars

        assert self.risk is not None
        anchor = ts.floor("1h")
        cached = self._risk_market
        if cached is None or cached[0] != anchor:
            bars = self.store.read_asof(anchor, self.risk.var_window_bars)
            base = market_from_bars(bars, self.settings.interval, self.settings.max_ffill_bars)
            self._risk_market = cached = (anchor, base)
        md = copy.copy(cached[1])
        prices = dict(md.prices)
        snap = svc.bars.snapshot
        if snap is not None:
            panel = snap.panel
            i = int(np.searchsorted(panel.ts, ts.value, side="right"))
            for j, p in enumerate(panel.pairs):
                ok = np.flatnonzero(np.isfinite(panel.close[:i, j]))
                if len(ok):
                    prices[p] = float(panel.close[ok[-1], j])
        md.prices = prices
        return md

    # -- the broker -------------------------------------------------------------------
    def backtest(self, upto: pd.Timestamp | None = None, *, before: Any = None) -> Any:
        """The backtest engine on the session's bars up to ``upto`` and its logged decisions
        (those before ``before`` when given; None when nothing is logged yet)."""
        from bqx.backtest.engine import run

        upto = upto if upto is not None else self._cursor()
        if upto is None:
            return None
        sig = session_signals(self.state, self.name, self.pairs, self.start, upto)
        if before is not None and len(sig):
            sig = sig[sig["ts"] < before]
        if sig.empty:
            return None
        bars = self.store.read(self.pairs, self.start, upto)
        return run(bars, sig, self.config)

    def settle(self, upto: pd.Timestamp) -> int:
        """Persist the account as of bar ``upto``; returns trades newly closed."""
        res = self.backtest(upto)
        if res is None:
            cap = self.config.capital
            return int(
                self.state.paper_settle(
                    self.name, [], [], settled_ts=upto, equity=cap, realized=0.0
                )
            )
        trades = res.trades
        is_open = (trades["exit_reason"] == "end").to_numpy()
        closed = trades[~is_open]
        opened = trades[is_open].copy()
        for c in ("exit_ts", "exit_mid", "exit_price", "exit_reason", "gross_pnl", "net_pnl"):
            opened[c] = None
        equity = float(res.equity["equity"].iloc[-1])
        realized = float(closed["net_pnl"].sum()) if len(closed) else 0.0
        return int(
            self.state.paper_settle(
                self.name,
                closed.to_dict("records"),
                opened.to_dict("records"),
                settled_ts=upto,
                equity=equity,
                realized=realized,
            )
        )

    # -- reading ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        row = self.state.get_paper_session(self.name) or self.row
        trades = self.state.read_paper_trades(self.name)
        closed = trades[~trades["is_open"].astype(bool)] if len(trades) else trades
        opened = trades[trades["is_open"].astype(bool)] if len(trades) else trades
        cap = self.config.capital
        eq = row.get("equity")
        return {
            "name": self.name,
            "status": row["status"],
            "feed": row["feed"],
            "pairs": self.pairs,
            "start": row["start_ts"],
            "end": row["end_ts"],
            "cursor": row["cursor_ts"],
            "settled": row["settled_ts"],
            "owner": row["owner"],
            "heartbeat": row["heartbeat_at"],
            "message": row["message"],
            "capital": cap,
            "risk_limits": self.risk.model_dump(mode="json") if self.risk else None,
            "equity": eq,
            "return": (eq / cap - 1.0) if eq is not None else None,
            "realized_pnl": float(closed["net_pnl"].sum()) if len(closed) else 0.0,
            "trades_closed": len(closed),
            "open_positions": [
                {
                    "pair": r["pair"],
                    "side": "long" if r["side"] > 0 else "short",
                    "entry_ts": r["entry_ts"],
                    "entry_price": r["entry_price"],
                    "size": r["size"],
                }
                for r in opened.to_dict("records")
            ],
        }


def _has_bar(snap: Any, pair: str, ts: pd.Timestamp) -> bool:
    if snap is None or pair not in snap.panel.pairs:
        return False
    try:
        row = snap.panel.row_at_or_before(ts, pair)
    except BqxError:
        return False
    return bool(int(snap.panel.ts[row]) == ts.value)


def _reason(e: BqxError) -> str:
    """A stable snake_case reason from an error class (``NoProductionModelError`` ->
    ``no_production_model``)."""
    n = type(e).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower() or "error"


def session_signals(
    state: Any, name: str, pairs: Sequence[str], start: Any, end: Any
) -> pd.DataFrame:
    """The signals a session logged: ``pair, ts, signal, prediction, max_notional`` (ts =
    as-of bar; ``max_notional`` the risk manager's cap on the trade the row opens, NaN =
    none) - exactly what ``bqx backtest --signals`` reads from a file."""
    d = state.read_decisions(list(pairs), start, end, by="asof_ts")
    if len(d):
        mine = np.array(
            [isinstance(x, dict) and x.get("session") == name for x in d["extra"]], dtype=bool
        )
        d = d[mine]
    out = pd.DataFrame(
        {
            "pair": d["pair"].astype(str).to_numpy() if len(d) else np.array([], dtype=object),
            "ts": pd.DatetimeIndex(d["asof_ts"]) if len(d) else pd.DatetimeIndex([], tz="UTC"),
            "signal": d["signal"].astype(str).to_numpy() if len(d) else np.array([], dtype=object),
            "prediction": d["prediction"].to_numpy(float) if len(d) else np.array([], float),
            "max_notional": np.array([_cap(x) for x in d["extra"]], float)
            if len(d)
            else np.array([], float),
        }
    )
    return out.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)


_SIG_COLS = ("pair", "ts", "signal", "prediction", "max_notional")


def _cap(extra: Any) -> float:
    r = extra.get("risk") if isinstance(extra, dict) else None
    cap = r.get("max_notional") if isinstance(r, dict) else None
    return float(cap) if cap is not None else math.nan


# ---------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------
def compare_session(sess: PaperSession) -> dict[str, Any]:
    """The persisted paper account against an independent backtest of its logged decisions
    on the same bars: trades matched field by field, ``max_abs_pnl_diff`` and the first
    difference (a missing trade, or a field), if any."""
    row = sess.state.get_paper_session(sess.name) or sess.row
    upto = row["settled_ts"]
    paper = sess.state.read_paper_trades(sess.name)
    res = sess.backtest(pd.Timestamp(upto) if upto is not None else None)
    bt = res.trades if res is not None else pd.DataFrame(columns=["pair", "entry_ts"])
    bt_open = (bt["exit_reason"] == "end").to_numpy() if len(bt) else np.zeros(0, bool)
    p_idx = {(r["pair"], pd.Timestamp(r["entry_ts"])): r for r in paper.to_dict("records")}
    b_idx = {
        (r["pair"], pd.Timestamp(r["entry_ts"])): (r, bool(o))
        for r, o in zip(bt.to_dict("records"), bt_open, strict=True)
    }
    diffs: list[dict[str, Any]] = []
    matched = 0
    max_pnl = 0.0
    for key in sorted(set(p_idx) | set(b_idx), key=lambda k: (k[1], k[0])):
        p = p_idx.get(key)
        b = b_idx.get(key)
        where = {"pair": key[0], "entry_ts": key[1]}
        if p is None or b is None:
            diffs.append(
                {**where, "field": "trade", "paper": p is not None, "backtest": b is not None}
            )
            continue
        brow, b_is_open = b
        if bool(p["is_open"]) != b_is_open:
            diffs.append(
                {**where, "field": "open", "paper": bool(p["is_open"]), "backtest": b_is_open}
            )
            continue
        fields = COMPARED if not b_is_open else ("side", "signal_ts", "entry_price", "size")
        bad = None
        for f in fields:
            pv, bv = p.get(f), brow.get(f)
            if not _same(pv, bv):
                bad = {**where, "field": f, "paper": pv, "backtest": bv}
                break
        if bad is not None:
            diffs.append(bad)
            continue
        matched += 1
        if not b_is_open:
            max_pnl = max(max_pnl, abs(float(p["net_pnl"]) - float(brow["net_pnl"])))
    eq_paper = row.get("equity")
    eq_bt = float(res.equity["equity"].iloc[-1]) if res is not None else sess.config.capital
    return {
        "name": sess.name,
        "settled_to": upto,
        "paper_trades": len(paper),
        "backtest_trades": len(bt),
        "trades_matched": matched,
        "max_abs_pnl_diff": max_pnl,
        "equity_paper": eq_paper,
        "equity_backtest": eq_bt,
        "equity_diff": (abs(eq_paper - eq_bt) if eq_paper is not None else None),
        "identical": not diffs and len(paper) == len(bt),
        "differences": len(diffs),
        "first_difference": diffs[0] if diffs else None,
        "note": "the backtest replays the decisions the session logged on the same bars and "
        "cost model; a walk-forward backtest of the same period retrains per window and so "
        "trades different forecasts (compare it with `bqx backtest --windows`)",
    }


def compare_version_backtest(sess: PaperSession) -> dict[str, Any]:
    """The paper account against a backtest of the *same model versions* predicting the same
    period through the batch path (``bqx predict-batch``: features built in bulk, no API, no
    rollout routing, no regime scaling), on the same bars and cost model.

    Unlike :func:`compare_session` this is not expected to be identical: the paper session
    decides through the live path. Where the two differ the differences say what the live path
    adds (regime-scaled signal strength, rollout arms, decisions held for insufficient inputs),
    which is what a user needs to know before trusting a backtest for live trading. A
    walk-forward backtest (``bqx backtest --windows``) differs further because it retrains
    per window; this comparison keeps the served versions fixed."""
    from bqx.backtest.engine import run
    from bqx.serving.batch import predict_batch

    row = sess.state.get_paper_session(sess.name) or sess.row
    upto = row["settled_ts"] or row["cursor_ts"]
    base: dict[str, Any] = {"settled_to": upto, "versions": {}}
    if upto is None:
        return {**base, "skipped": "nothing settled yet"}
    upto = pd.Timestamp(upto)
    d = sess.state.read_decisions(list(sess.pairs), sess.start, upto, by="asof_ts")
    if len(d):
        d = d[[isinstance(x, dict) and x.get("session") == sess.name for x in d["extra"]]]
    served = d.dropna(subset=["model_version"]) if len(d) else d
    versions: dict[str, list[str]] = (
        {str(p): sorted({str(v) for v in g["model_version"]}) for p, g in served.groupby("pair")}
        if len(served)
        else {}
    )
    base["versions"] = versions
    if not versions:
        return {**base, "skipped": "no decision of the session came from a model"}
    reg = sess.registry
    if reg is None:
        from bqx.registry import Registry

        reg = Registry(sess.settings)
    # one version per pair: the one that made most of the session's decisions
    arts = {}
    for p, g in served.groupby("pair"):
        v = g["model_version"].astype(str).value_counts().index[0]
        arts[str(p)] = reg.load(str(p), version=v)
    res_b = predict_batch(list(arts), sess.start, upto, sess.settings, store=sess.store,
                          artifacts=arts)  # fmt: skip
    sig_b = res_b.frame[["pair", "ts", "signal", "prediction"]]
    sig_p = session_signals(sess.state, sess.name, list(arts), sess.start, upto)
    # the risk manager's answers depend on the paper account, which a batch run does not
    # have: the paper session's caps and risk holds apply to both sides, so what differs
    # is the forecast and signal layer
    sig_b = sig_b.merge(sig_p[["pair", "ts", "max_notional"]], on=["pair", "ts"], how="left")
    risk_held = (
        d[d["signal_reason"].astype(str).str.startswith("risk_")][["pair", "asof_ts"]]
        if len(d)
        else pd.DataFrame(columns=["pair", "asof_ts"])
    )
    if len(risk_held):
        hk = set(zip(risk_held["pair"].astype(str), pd.DatetimeIndex(risk_held["asof_ts"]).asi8,
                     strict=True))  # fmt: skip
        is_held = np.array(
            [(p, t) in hk for p, t in zip(sig_b["pair"].astype(str),
                                          pd.DatetimeIndex(sig_b["ts"]).asi8, strict=True)],
            dtype=bool,
        )  # fmt: skip
        sig_b.loc[is_held, "signal"] = "HOLD"
    bars = sess.store.read(list(arts), sess.start, upto)
    bt_b = run(bars, sig_b, sess.config)
    bt_p = run(bars, sig_p, sess.config) if len(sig_p) else None
    m = sig_p.merge(sig_b, on=["pair", "ts"], how="inner", suffixes=("_paper", "_batch"))
    agree = float((m["signal_paper"] == m["signal_batch"]).mean()) if len(m) else float("nan")
    both = m.dropna(subset=["prediction_paper", "prediction_batch"])
    pred_diff = (
        float(np.max(np.abs(both["prediction_paper"] - both["prediction_batch"])))
        if len(both)
        else float("nan")
    )
    tp = bt_p.trades if bt_p is not None else pd.DataFrame(columns=["pair", "entry_ts", "side"])
    tb = bt_b.trades

    def keys(t: pd.DataFrame) -> set[tuple[str, pd.Timestamp, str]]:
        ts = pd.DatetimeIndex(pd.to_datetime(t["entry_ts"], utc=True))
        return set(zip(t["pair"].astype(str), ts, t["side"].astype(str), strict=True))

    kp, kb = keys(tp), keys(tb)
    eq_p = float(bt_p.equity["equity"].iloc[-1]) if bt_p is not None else sess.config.capital
    eq_b = float(bt_b.equity["equity"].iloc[-1])
    return {
        **base,
        "bars_compared": len(m),
        "risk_held": len(risk_held),
        "risk_capped": int(np.isfinite(sig_p["max_notional"]).sum()) if len(sig_p) else 0,
        "signal_agreement": agree,
        "max_abs_prediction_diff": pred_diff,
        "paper_trades": len(tp),
        "version_backtest_trades": len(tb),
        "trades_in_both": len(kp & kb),
        "equity_paper": eq_p,
        "equity_version_backtest": eq_b,
        "equity_diff": eq_p - eq_b,
        "note": "same versions, same bars and costs, batch features instead of the live path "
        "(the paper session's risk caps and risk holds applied to both): differences come "
        "from regime-scaled signals, rollout arms and held decisions (insufficient inputs); "
        "a walk-forward backtest also retrains per window",
    }


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NaT
    if isinstance(a, (pd.Timestamp, np.datetime64)) or isinstance(b, (pd.Timestamp, np.datetime64)):
        try:
            return bool(pd.Timestamp(a) == pd.Timestamp(b))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return abs(float(a) - float(b)) <= PNL_TOL
    return bool(a == b)
