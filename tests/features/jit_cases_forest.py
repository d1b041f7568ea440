"""Kernel cases of the leanhttp branch (tests/features/test_jit.py runs them): the random
forest's compiled walk (bqx.training.fastpredict)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bqx.training.fastpredict import _forest_leaves


def _forest_args(rng: np.random.Generator) -> tuple[Any, ...]:
    """Random complete binary trees in ``_Forest``'s table layout (leaves point at
    themselves, threshold inf), a row with NaNs and values on the thresholds."""
    n_feat, depth, n_trees = 12, 6, 9
    per = 2 ** (depth + 1) - 1
    feature, threshold, left, right, miss, value, roots = [], [], [], [], [], [], []
    for t in range(n_trees):
        off = t * per
        roots.append(off)
        for i in range(per):
            leaf = 2 * i + 1 >= per
            feature.append(0 if leaf else int(rng.integers(n_feat)))
            threshold.append(np.inf if leaf else float(np.float32(rng.standard_normal())))
            left.append(off + (i if leaf else 2 * i + 1))
            right.append(off + (i if leaf else 2 * i + 2))
            miss.append(bool(rng.integers(2)))
            value.append(rng.standard_normal())
    x = rng.standard_normal(n_feat).astype(np.float32).astype(np.float64)
    x[rng.integers(n_feat, size=3)] = np.nan
    x[0] = threshold[roots[0]]  # on a threshold: goes left
    return (
        x,
        np.array(feature, dtype=np.intp),
        np.array(threshold),
        np.array(left, dtype=np.intp),
        np.array(right, dtype=np.intp),
        np.array(miss),
        np.array(value),
        np.array(roots, dtype=np.intp),
        depth,
    )


CASES = {_forest_leaves.__qualname__: (_forest_leaves, _forest_args, True)}
