"""Per-pair computation context shared by the feature families.

A :class:`Ctx` holds one pair's bar arrays over a range of panel rows, the cross-section
(currency indices) over the same rows, and a memo of intermediate series (EMAs, ATR, ADX...)
so families that share an intermediate compute it once.

Families receive ``(ctx, pos)``: they may compute cheap O(n) series over all rows of the
context, but must evaluate expensive windowed reductions only at ``pos``. In batch ``pos``
is (almost) every row; online it is the handful of rows a single prediction needs (t and its
lags), and the context is just the lookback window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from bqx.features.panel import Panel
from bqx.universe import CURRENCIES, PAIRS, pip_size

Arr = np.ndarray


@dataclass(frozen=True)
class Spec:
    """One base feature: declared once, read by the catalog and the lookahead audit."""

    name: str
    family: str
    description: str
    #: Rows before t whose bars the value at t reads (the online window needs lookback + 1).
    lookback: int
    #: Source fields beyond OHLC the feature needs: "volume", "spread", "cross" (all 28 pairs).
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    lagged: bool
    specs: tuple[Spec, ...]
    compute: Callable[[Ctx, Arr], Arr]
    #: Optional: ``(ctx, pos, idx) -> (len(pos), len(idx))``, only the specs ``idx`` (the
    #: online path of a model that uses a few of the family's features). Must equal the
    #: matching columns of ``compute`` bit for bit; without it the online path computes the
    #: whole family and keeps the columns it needs.
    compute_subset: Callable[[Ctx, Arr, Sequence[int]], Arr] | None = None
    #: Optional: ``(ctx, pos, idx) -> (len(pos), len(idx))`` for the online path (a handful
    #: of rows): each value evaluated at its row only (one window reduction over the rows it
    #: reads) instead of full series over the context. Used by both online calls (all
    #: columns and ``only=``), so they agree bit for bit; each spec's value must not depend
    #: on which other specs are asked for. Must agree with ``compute`` to rounding (the batch
    #: definition; tested in ``tests/features/test_parity.py``).
    compute_online: Callable[[Ctx, Arr, Sequence[int]], Arr] | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]


_T = TypeVar("_T")


class _lazy(Generic[_T]):
    """``functools.cached_property`` without its per-access lock (Python 3.11 takes an
    RLock on every first read; a context is read by one thread): computed on the first
    read, then an ordinary instance attribute."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]
        v = obj.__dict__[self.name] = self.fn(obj)
        return v


def _returns(ctx: Ctx) -> Arr:
    r = np.empty(ctx.n)
    r[0] = np.nan
    np.subtract(ctx.lc[1:], ctx.lc[:-1], out=r[1:])
    return r


def _ccy_members() -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {c: [] for c in CURRENCIES}
    for p in PAIRS:
        out[p[:3]].append((p, 1.0))
        out[p[3:]].append((p, -1.0))
    return out


CCY_MEMBERS = _ccy_members()
_PIPS: dict[str, float] = {}


def _pip(pair: str) -> float:
    v = _PIPS.get(pair)
    if v is None:
        v = _PIPS[pair] = pip_size(pair)
    return v


#: The rows of :meth:`Ctx.block` (the source fields, then the log close).
BLOCK_FIELDS = ("open", "high", "low", "close", "volume", "spread", "log_close")
_ROW = {f: k for k, f in enumerate(BLOCK_FIELDS)}


def pair_block(panel: Panel, j: int) -> Arr:
    """The (7, rows) block of column ``j`` of ``panel`` (:meth:`Ctx.block`), made once and
    kept in the panel's cache (the panel's arrays are not changed after construction).

    Its log close is ``np.log`` of the pair's close column alone, not of the whole panel:
    the first call on a new panel no longer takes the log of all 28 pairs (numpy's log is
    elementwise, the same value for an element whatever the array's layout: the same bits
    as ``panel.log_close[:, j]``, tested in ``tests/features/test_kern_small.py``)."""
    key = ("pair_block", j)
    b: Arr | None = panel._cache.get(key)
    if b is None:
        b = np.empty((len(BLOCK_FIELDS), len(panel)))
        for k, f in enumerate(BLOCK_FIELDS[:-1]):
            b[k] = getattr(panel, f)[:, j]
        if panel._lc is not None:
            b[-1] = panel._lc[:, j]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                np.log(b[3], out=b[-1])
        panel._cache[key] = b
    return b


class Ctx:
    """One pair's arrays over panel rows, plus memoised intermediates."""

    def __init__(self, panel: Panel, pair: str):
        self._j = panel.col(pair)
        self.panel = panel
        self.pair = pair
        self.pip = pip_size(pair)
        self.n = len(panel)
        self.ts = panel.ts
        self._memo: dict[object, object] = {}
        self._src: tuple[Panel, int, int] | None = None
        self._shared = False
        self._from = 0

    @classmethod
    def window(
        cls, panel: Panel, pair: str, j: int, start: int, stop: int, shared: int | None = None
    ) -> Ctx:
        """The context of rows ``[start, stop)`` of ``panel`` (``j`` = the pair's column,
        ``start >= 0``) for the online path: the same values as
        ``Ctx(panel.slice_rows(start, stop), pair)``, but the pair's arrays are views of
        contiguous per-panel copies of its columns (made once per panel, not once per family
        and call), and the sliced panel (the cross-section) is built only when read.

        ``shared`` (a row ``<= start``: the first row any window of the call reads):
        row-local intermediates (:meth:`series`) are computed once per panel, from that
        row on, and sliced, instead of once per window (the ``only=`` online path; the full
        online call keeps per-window ones, its reference)."""
        self = cls.__new__(cls)
        self._j = j
        self.pair = pair
        self.pip = _pip(pair)
        self.n = stop - start
        self._memo = {}
        self._src = (panel, start, stop)
        self._shared = shared is not None
        self._from = start if shared is None else shared
        return self

    def series(self, key: str, fn: Callable[[Ctx], Any]) -> Any:
        """A row-local intermediate ``fn(ctx)`` (an array, or a tuple of arrays, over the
        context's rows, each row's value an elementwise function of that row and a few rows
        before it: returns, true range, ...), memoised under ``key``.

        In a shared window context it is computed once per panel on a context of the
        panel's rows from ``s0`` on (see :meth:`_panel_series`) and sliced: bit for bit the
        per-window values at every row whose inputs lie in the window. Only the first rows,
        whose "previous bar" lies before the window (NaN per window, a number per panel),
        differ, and no value reads them: the declared lookbacks keep every window reduction
        inside the rows its feature reads (the ``only=`` call equals the full online call
        bit for bit, ``tests/features/test_parity.py``)."""
        v = self._memo.get(key)
        if v is not None:
            return v
        if self._shared and self._src is not None:
            s0, full = self._panel_series(key, fn)
            a, b = self._src[1] - s0, self._src[2] - s0
            v = tuple(x[a:b] for x in full) if isinstance(full, tuple) else full[a:b]
        else:
            v = fn(self)
        self._memo[key] = v
        return v

    @_lazy
    def panel(self) -> Panel:  # set in __init__; built on first read for a window context
        assert self._src is not None
        base, start, stop = self._src
        return base.slice_rows(start, stop)

    @_lazy
    def ts(self) -> Arr:  # set in __init__; sliced on first read for a window context
        assert self._src is not None
        base, start, stop = self._src
        return base.ts[start:stop]

    def _col(self, name: str) -> Arr:
        if self._src is None:
            return np.ascontiguousarray(getattr(self.panel, name)[:, self._j])
        base, start, stop = self._src
        return pair_block(base, self._j)[_ROW[name], start:stop]

    def block(self) -> tuple[Arr, int]:
        """(the pair's block, the context's first row in it) for a compiled kernel: a
        C-contiguous (7, rows) float64 array of open, high, low, close, volume, spread and
        log close (:data:`BLOCK_FIELDS`). A window context's block covers its base panel's
        rows (made once per panel, shared by every family and call: the context's arrays
        are views of it), so a kernel must not read rows before the given first row nor
        after the context's last row."""
        if self._src is not None:
            return pair_block(self._src[0], self._j), self._src[1]
        b = self._memo.get("block")
        if b is None:
            b = self._memo["block"] = np.stack([self._col(f) for f in BLOCK_FIELDS])
        return b, 0  # type: ignore[return-value]

    def _panel_series(self, key: str, fn: Callable[[Ctx], Any]) -> tuple[int, Any]:
        """(s0, ``fn`` over the panel's rows from ``s0`` to its end), kept in the panel's
        cache per pair (arrays only: nothing there refers back to the panel). ``s0 <=
        start`` is the first row the first asking call reads (a new panel is built for
        every new bar, and its first call is for the newest bar: its intermediates cover
        the rows that call reads, as its windows' did), then 0 once a call reads earlier
        rows."""
        assert self._src is not None
        base, start, _ = self._src
        ck = ("series", self._j)
        hit: tuple[int, dict[str, Any]] | None = base._cache.get(ck)
        if hit is None or hit[0] > start:
            s0 = min(start, self._from) if hit is None else 0
            hit = base._cache[ck] = (s0, {})
        s0, store = hit
        v = store.get(key)
        if v is None:
            # a context of those rows, not shared: its own intermediates are computed there
            v = store[key] = fn(Ctx.window(base, self.pair, self._j, s0, len(base)))
        return s0, v

    # the pair's arrays, extracted on first use (an online family reads only a few of them)
    @_lazy
    def o(self) -> Arr:
        return self._col("open")

    @_lazy
    def h(self) -> Arr:
        return self._col("high")

    @_lazy
    def l(self) -> Arr:  # noqa: E743
        return self._col("low")

    @_lazy
    def c(self) -> Arr:
        return self._col("close")

    @_lazy
    def v(self) -> Arr:
        return self._col("volume")

    @_lazy
    def s(self) -> Arr:
        return self._col("spread")

    @_lazy
    def lc(self) -> Arr:
        return self._col("log_close")

    @_lazy
    def r(self) -> Arr:
        """One-bar log returns (NaN at the first row)."""
        return self.series("r", _returns)

    def memo(self, key: object, fn: Callable[[], Arr]) -> Arr:
        v = self._memo.get(key)
        if v is None:
            v = fn()
            self._memo[key] = v
        return v  # type: ignore[return-value]

    # ---- cross-section (cached on the panel: shared by every pair of a batch run) ----------
    def _panel_memo(self, key: object, fn: Callable[[], Arr]) -> Arr:
        # a window context's sliced panel lives only as long as the context: its own memo
        # holds the same values without building the sliced panel
        cache: dict[object, Any] = self._memo if self._src is not None else self.panel._cache
        v = cache.get(key)
        if v is None:
            v = fn()
            cache[key] = v
        return v

    def _panel_returns(self) -> Arr:
        def f() -> Arr:
            d = np.empty_like(self.panel.log_close)
            d[0] = np.nan
            np.subtract(self.panel.log_close[1:], self.panel.log_close[:-1], out=d[1:])
            return d

        return self._panel_memo("returns", f)

    def ccy_return(self, ccy: str) -> Arr:
        """Per-bar return of a currency index: mean of its 7 pairs' log returns, oriented so
        that up means the currency strengthened. NaN when any of the 7 pairs is absent."""

        def f() -> Arr:
            if self._src is not None:
                return self._ccy_return_window(ccy)
            pairs = self.panel.pairs
            members = CCY_MEMBERS[ccy]
            if not all(p in pairs for p, _ in members):
                return np.full(self.n, np.nan)
            cols = [pairs.index(p) for p, _ in members]
            signs = np.array([sgn for _, sgn in members]) / len(members)
            return self._panel_returns()[:, cols] @ signs

        return self._panel_memo(("ccy_r", ccy), f)

    def _ccy_return_window(self, ccy: str) -> Arr:
        """:meth:`ccy_return` of a window context: the same (rows, 7) matrix as
        ``_panel_returns()[:, cols]`` of the sliced panel (its values and its column-major
        layout, so the same BLAS call), copied from the returns of the 7 member columns
        taken once per panel (from the first asking window's start to the panel's end, from
        row 0 when an earlier window asks), without building the sliced panel."""
        assert self._src is not None
        base, start, stop = self._src
        key = ("ccy_diff", ccy)
        hit: tuple[int, Arr | None, Arr | None] | None = base._cache.get(key)
        if hit is None or hit[0] > start:
            # from the first asking window's start to the panel's end (see _panel_series)
            s0 = start if hit is None else 0
            pairs = base.pairs
            members = CCY_MEMBERS[ccy]
            if not all(p in pairs for p, _ in members):
                hit = (0, None, None)
            else:
                cols = [pairs.index(p) for p, _ in members]
                if base._lc is not None:
                    lc = base._lc[s0:, cols]
                else:  # the log of these columns only (elementwise: the same values)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        lc = np.log(base.close[s0:, cols])
                diff = np.empty(lc.shape, order="F")
                diff[0] = np.nan
                np.subtract(lc[1:], lc[:-1], out=diff[1:])
                hit = (s0, diff, np.array([sgn for _, sgn in members]) / len(members))
            base._cache[key] = hit
        s0, full, signs = hit
        if full is None or signs is None:
            return np.full(self.n, np.nan)
        d = full[start - s0 : stop - s0].copy(order="F")
        d[0] = np.nan
        return d @ signs

    def market_abs_return(self) -> Arr:
        """Mean absolute 1-bar log return over all pairs present (market activity)."""
        if self._shared:  # row by row: a per-panel series (:meth:`series`)
            return self.series("mkt_abs", Ctx.market_abs_return)

        def f() -> Arr:
            d = np.abs(self._panel_returns())
            fin = np.isfinite(d)
            cnt = fin.sum(axis=1)
            s = np.where(fin, d, 0.0).sum(axis=1)
            return np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)

        return self._panel_memo("mkt_abs", f)
