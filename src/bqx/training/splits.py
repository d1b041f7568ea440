"""Chronological splits with purge gaps, and walk-forward windows.

The target at row t uses bars t+1 .. t+h, so a training row is "contaminated" by the h bars
after it. Segments are therefore separated by a purge gap of at least h + 1 rows: no label of
an earlier segment can see a bar of a later one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    gap: int

    def bounds(self, index: pd.DatetimeIndex) -> dict[str, list[str]]:
        return {
            k: [index[v[0]].isoformat(), index[v[-1]].isoformat()] if len(v) else []
            for k, v in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def chrono_split(n: int, train: float = 0.70, val: float = 0.15, gap: int = 61) -> Split:
    """Row positions of train / validation / test in time order, ``gap`` rows purged between.

    The purged rows are taken from the start of the later segment, so the fractions refer
    to the rows before purging.
    """
    if not 0 < train < 1 or not 0 <= val < 1 or train + val >= 1:
        raise ValueError("need 0 < train, 0 <= val, train + val < 1")
    if gap < 0:
        raise ValueError("gap must be >= 0")
    n_tr = int(n * train)
    n_va = int(n * val)
    tr = np.arange(0, n_tr)
    va = np.arange(n_tr + gap, n_tr + n_va)
    te = np.arange(n_tr + n_va + gap, n)
    if len(tr) == 0 or len(va) == 0 or len(te) == 0:
        raise ValueError(f"{n} rows are too few for a 3-way split with a {gap}-row purge gap")
    return Split(tr, va, te, gap)


@dataclass(frozen=True)
class Window:
    """One walk-forward window: train on [train_start, train_end], test on (.., test_end]."""

    number: int
    train: np.ndarray
    test: np.ndarray
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def walk_forward(
    index: pd.DatetimeIndex,
    train_months: int = 6,
    test_months: int = 1,
    windows: int | None = None,
    gap: int = 61,
) -> list[Window]:
    """Rolling windows over calendar months: train ``train_months``, test the next
    ``test_months``, roll by ``test_months``. The last ``windows`` windows are returned (all
    complete ones when None). ``gap`` rows are purged between each train and test segment."""
    if not len(index):
        return []
    idx = pd.DatetimeIndex(index)
    first = idx[0].normalize().replace(day=1)
    # the first full month: skip a partial first month
    if idx[0] > first:
        first = first + pd.offsets.MonthBegin(1)
    out: list[Window] = []
    k = 0
    while True:
        tr_s = first + pd.DateOffset(months=k * test_months)
        te_s = tr_s + pd.DateOffset(months=train_months)
        te_e = te_s + pd.DateOffset(months=test_months)
        # a test period counts when the data reaches its end (allowing a closing weekend)
        if idx[-1] < te_e - pd.Timedelta(days=4):
            break
        tr = np.flatnonzero((idx >= tr_s) & (idx < te_s))
        te = np.flatnonzero((idx >= te_s) & (idx < te_e))
        if len(tr) and len(te):
            te = te[te >= tr[-1] + gap + 1]
        if len(tr) and len(te):
            out.append(Window(len(out), tr, te, idx[tr[0]], idx[tr[-1]], idx[te[0]], idx[te[-1]]))
        k += 1
    if windows is not None and len(out) > windows:
        out = out[-windows:]
        out = [
            Window(i, w.train, w.test, w.train_start, w.train_end, w.test_start, w.test_end)
            for i, w in enumerate(out)
        ]
    return out


def tuning_calibration_split(val: np.ndarray, gap: int = 61) -> tuple[np.ndarray, np.ndarray]:
    """Split the validation rows into a tuning half and a later calibration half.

    The tuner (:mod:`bqx.training.tune`) scores trials on the first half only; the conformal
    interval is calibrated on the second half, ``gap`` rows later. Calibrating on rows the tuner
    maximised would make the interval optimistic for tuned parameters (their validation errors
    are selected to be small); the purge gap keeps the halves' labels from sharing bars.
    """
    half = len(val) // 2
    tune_rows, cal_rows = val[:half], val[half + gap :]
    if not len(tune_rows) or len(cal_rows) < 20:
        raise ValueError(
            f"{len(val)} validation rows are too few to split into tuning and calibration "
            f"halves with a {gap}-row purge gap"
        )
    return tune_rows, cal_rows
