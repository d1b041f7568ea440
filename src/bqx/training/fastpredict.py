"""One-row prediction without per-call library overhead.

sklearn's ``RandomForestRegressor.predict`` costs ~10 ms for one row (input validation and
thread dispatch, measured in docs/performance.md) while the trees themselves take micro-
seconds. ``compile_pipeline`` turns a fitted pipeline (selection -> scaler -> estimator) into
plain arrays: the forest becomes one flat node table walked for all trees at once, LightGBM
and XGBoost call their boosters directly, Ridge is a dot product. Results equal
``pipeline.predict`` (tests check equality on thousands of rows).
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from bqx.features._jit import kernel


class FastPredictor:
    """Predict from the full candidate vector (``columns()`` order) or a batch of them."""

    def __init__(self, pipeline: Pipeline, all_columns: list[str]):
        sel = pipeline.named_steps["select"]
        scaler = pipeline.named_steps["scale"]
        model = pipeline.named_steps["model"]
        pos = {c: i for i, c in enumerate(all_columns)}
        self.idx = np.array([pos[c] for c in sel.columns_], dtype=np.intp)
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        self.kind = type(model).__name__
        self._impl = _compile_model(model)

    def _prep(self, x: np.ndarray) -> np.ndarray:
        return (x[..., self.idx] - self.mean) / self.scale

    def predict_one(self, x: np.ndarray) -> float:
        return float(self._impl(self._prep(np.asarray(x, dtype=np.float64))[None, :])[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._impl(self._prep(np.asarray(X, dtype=np.float64))), dtype=np.float64)


def _compile_model(model: Any) -> Any:
    name = type(model).__name__
    if name == "RandomForestRegressor":
        return _Forest(model)
    if name == "LGBMRegressor":
        return _LgbBooster(model.booster_)
    if name == "XGBRegressor":
        booster = model.get_booster()

        def xgb(X: np.ndarray) -> np.ndarray:
            return np.asarray(booster.inplace_predict(X), dtype=np.float64)

        return xgb
    if isinstance(model, Pipeline) and "ridge" in model.named_steps:
        imp = model.named_steps["impute"].statistics_
        ridge = model.named_steps["ridge"]
        coef = np.asarray(ridge.coef_, dtype=np.float64)
        b = float(ridge.intercept_)

        def lin(X: np.ndarray) -> np.ndarray:
            X = np.where(np.isnan(X), imp, X)
            return X @ coef + b

        return lin
    raise TypeError(f"no fast path for {name}")


class _Forest:
    """All trees of a fitted forest in one node table; one row walks every tree at once."""

    def __init__(self, rf: Any):
        feats, thr, left, right, val, miss_left, roots = [], [], [], [], [], [], []
        off = 0
        depth = 0
        for est in rf.estimators_:
            t = est.tree_
            n = t.node_count
            roots.append(off)
            leaf = t.children_left == -1
            f = t.feature.copy()
            f[leaf] = 0
            lft = np.where(leaf, np.arange(n), t.children_left) + off
            rgt = np.where(leaf, np.arange(n), t.children_right) + off
            feats.append(f)
            thr.append(np.where(leaf, np.inf, t.threshold))
            left.append(lft)
            right.append(rgt)
            val.append(t.value[:, 0, 0])
            miss_left.append(t.missing_go_to_left.astype(bool))
            depth = max(depth, int(t.max_depth))
            off += n
        self.feature = np.concatenate(feats).astype(np.intp)
        self.threshold = np.concatenate(thr)
        self.left = np.concatenate(left).astype(np.intp)
        self.right = np.concatenate(right).astype(np.intp)
        self.value = np.concatenate(val)
        self.missing_left = np.concatenate(miss_left)
        self.roots = np.array(roots, dtype=np.intp)
        self.depth = depth

    def __call__(self, X: np.ndarray) -> np.ndarray:
        # sklearn compares float32 inputs with float64 thresholds: do the same
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        out = np.empty(len(X))
        for i in range(len(X)):
            # the walk compiled (the same comparisons); the mean stays numpy's own (its
            # pairwise summation order), so the value is the former one bit for bit
            leaves = _forest_leaves(
                X[i], self.feature, self.threshold, self.left, self.right,
                self.missing_left, self.value, self.roots, self.depth,
            )  # fmt: skip
            out[i] = leaves.mean()
        return out


@kernel
def _forest_leaves(
    x: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    missing_left: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    depth: int,
) -> np.ndarray:
    """The leaf value of every tree for one row ``x`` (float64 holding float32 values), as
    the former numpy walk: all trees advance one level at a time (the loads of different
    trees are independent, so the CPU overlaps their cache misses: the table, ~10 MB for
    100 deep trees, is mostly out of cache after a request's features; tree by tree is
    ~1.5x slower); at each split NaN goes the learned way, else left when
    ``x[f] <= threshold``; a leaf points at itself."""
    n = roots.shape[0]
    node = roots.copy()
    for _ in range(depth):
        for t in range(n):
            k = node[t]
            v = x[feature[k]]
            go_left = missing_left[k] if np.isnan(v) else v <= threshold[k]
            node[t] = left[k] if go_left else right[k]
    out = np.empty(n)
    for t in range(n):
        out[t] = value[node[t]]
    return out


def warm_up() -> None:
    """Compile (or load from the disk cache) the forest kernel with the argument types of
    a real call (a one-split tree), so the first RF request of a server does not."""
    f = np.zeros(3, dtype=np.intp)
    x = np.zeros(1)
    _forest_leaves(
        x, f, np.array([0.0, np.inf, np.inf]), np.array([1, 1, 2], dtype=np.intp),
        np.array([2, 1, 2], dtype=np.intp), np.zeros(3, dtype=bool), np.zeros(3),
        np.zeros(1, dtype=np.intp), 1,
    )  # fmt: skip


class _LgbBooster:
    """A LightGBM booster's prediction; one row through the C API's single-row fast path.

    ``Booster.predict`` spends ~50 us per call in Python (a predictor object, the parameter
    string, input checks) before the trees run. ``LGBM_BoosterPredictForMatSingleRowFast``
    runs the same prediction (same iterations: the best one when there is one, as
    ``Booster.predict`` picks; ``num_threads=1``) with that set-up done once. Several rows
    still go through ``Booster.predict``. Equality with it is tested on every row of a
    test matrix (tests/training/test_fastpredict_lgb.py).
    """

    def __init__(self, booster: Any):
        self.booster = booster
        self._ncol = int(booster.num_feature())
        self._fast: ctypes.c_void_p | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"booster": self.booster}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["booster"])  # type: ignore[misc]

    def _config(self) -> ctypes.c_void_p:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        b = self.booster
        handle = ctypes.c_void_p()
        num_iteration = b.best_iteration  # Booster.predict's default with start_iteration 0
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                b._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(num_iteration),
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(self._ncol),
                _c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        return handle

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[0] != 1 or X.shape[1] != self._ncol:
            # several rows, or a width the booster was not trained on (Booster.predict
            # raises; the C call would read past the row)
            return np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)
        from lightgbm.basic import _LIB, _safe_call

        row = np.ascontiguousarray(X[0], dtype=np.float64)
        out = np.empty(1, dtype=np.float64)
        n = ctypes.c_int64(0)
        with self._lock:  # a fast config is not safe to share between threads
            if self._fast is None or self._pid != os.getpid():
                self._fast, self._pid = self._config(), os.getpid()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._fast,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(n),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                )
            )
        return out

    def __del__(self) -> None:
        fast = getattr(self, "_fast", None)
        if fast is not None and getattr(self, "_pid", -1) == os.getpid():
            try:
                from lightgbm.basic import _LIB

                _LIB.LGBM_FastConfigFree(fast)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass
