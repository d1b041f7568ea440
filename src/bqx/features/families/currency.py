"""Currency strength indices (8 features, not lagged), from all 28 pairs.

``csi_{C}`` = mean over the 7 pairs containing currency C of its signed 60-bar log return
(+ when C is the base): how much C gained against the other seven over the last 60 bars.
The same 8 values describe the market for every pair. NaN when any of C's pairs is absent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features.context import CCY_MEMBERS, Ctx, Family, Spec
from bqx.universe import CURRENCIES

W = 60
SPECS = tuple(
    Spec(
        f"csi_{c.lower()}",
        "currency",
        f"strength of {c}: mean signed 60-bar log return over its 7 pairs",
        W,
        ("cross",),
    )
    for c in CURRENCIES
)


def _plan(pairs: tuple[str, ...]) -> list[tuple[int, np.ndarray, np.ndarray] | None]:
    out: list[tuple[int, np.ndarray, np.ndarray] | None] = []
    for ccy in CURRENCIES:
        members = CCY_MEMBERS[ccy]
        if not all(m in pairs for m, _ in members):
            out.append(None)
            continue
        cols = np.array([pairs.index(m) for m, _ in members])
        signs = np.array([sgn for _, sgn in members]) / len(members)
        out.append((len(out), cols, signs))
    return out


_PLANS: dict[tuple[str, ...], list[tuple[int, np.ndarray, np.ndarray] | None]] = {}


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    panel = ctx.panel
    key = tuple(panel.pairs)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _plan(key)
    lc = panel.log_close
    out = np.full((len(pos), len(CURRENCIES)), np.nan)
    ok = pos >= W
    p = pos[ok]
    diff = lc[p] - lc[p - W]  # (m, pairs): 60-bar log return of every pair
    for item in plan:
        if item is None:
            continue
        k, cols, signs = item
        out[ok, k] = diff[:, cols] @ signs
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Only the asked indices, each with :func:`compute`'s arithmetic (the same difference
    of log closes, the same product per currency), on the panel rows of the context
    without building a sliced panel; the log is taken of the two rows each value reads
    (numpy's log is elementwise: the values of the panel's log close, without the log of
    the whole panel on a new panel's first call)."""
    if ctx._src is None:
        return compute(ctx, pos)[:, list(idx)]
    base, start, _ = ctx._src
    plan = base._cache.get("ccy_plan")
    if plan is None:
        key = tuple(base.pairs)
        plan = _PLANS.get(key)
        if plan is None:
            plan = _PLANS[key] = _plan(key)
        base._cache["ccy_plan"] = plan
    if len(pos) == 1:  # the online call of this non-lagged family: t alone
        q = int(pos[0]) + start
        if q - start < W:
            return np.full((1, len(idx)), np.nan)
        lc = base._lc
        if lc is not None:
            d = lc[q : q + 1] - lc[q - W : q - W + 1]
        else:
            close = base.close
            with np.errstate(invalid="ignore", divide="ignore"):
                d = np.log(close[q : q + 1]) - np.log(close[q - W : q - W + 1])
        res = np.empty((1, len(idx)))
        for j, k in enumerate(idx):
            item = plan[k]
            res[0, j] = np.nan if item is None else (d[:, item[1]] @ item[2])[0]
        return res
    out = np.full((len(pos), len(idx)), np.nan)
    ok = pos >= W
    p = pos[ok] + start
    rows = np.concatenate([p, p - W])
    if base._lc is not None:
        lcr = base._lc[rows]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            lcr = np.log(base.close[rows])
    m = len(p)
    diff = lcr[:m] - lcr[m:]  # lc[p] - lc[p - W], (m, pairs)
    for j, k in enumerate(idx):
        item = plan[k]
        if item is not None:
            _, cols, signs = item
            out[ok, j] = diff[:, cols] @ signs
    return out


FAMILY = Family("currency", False, SPECS, compute, compute_online=compute_online)
