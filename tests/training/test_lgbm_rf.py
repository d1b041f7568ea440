"""LightGBM's random-forest mode as the SPEC forest (issue 15 item 5): the hyperparameter
mapping, and that it is a forest (averaged bagged trees), not boosting."""

from __future__ import annotations

import numpy as np
import pytest

from bqx.training.models import LGBM_RF, RF_SPEC, make_estimator, resolve_params


def test_mapping_follows_the_spec_forest():
    p = resolve_params("lgbm_rf", LGBM_RF, 49)
    assert p["boosting_type"] == "rf"
    assert p["n_estimators"] == RF_SPEC["n_estimators"]
    assert p["max_depth"] == RF_SPEC["max_depth"]
    assert p["num_leaves"] >= 2 ** RF_SPEC["max_depth"]  # depth, not leaves, binds
    assert p["min_child_samples"] == RF_SPEC["min_samples_leaf"]
    assert 2 * p["min_child_samples"] >= RF_SPEC["min_samples_split"]
    assert p["feature_fraction_bynode"] == pytest.approx(7 / 49)  # max_features='sqrt'
    assert 0 < p["subsample"] < 1 and p["subsample_freq"] == 1  # bagging on
    # the stored version records the concrete fraction, and explicit values are kept
    assert resolve_params("lgbm_rf", {**LGBM_RF, "feature_fraction_bynode": 0.3}, 49)[
        "feature_fraction_bynode"
    ] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="n_features"):
        make_estimator("lgbm_rf")


def test_it_averages_trees_like_the_forest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 9))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=0.5, size=4000)
    est = make_estimator("lgbm_rf", {"n_estimators": 40}, n_features=9).fit(X[:3000], y[:3000])
    rf = make_estimator("rf", {"n_estimators": 40}).fit(X[:3000], y[:3000])
    # a forest's prediction is the mean of its trees': the first k trees' average stays on
    # the scale of the full forest's (boosting would add them up)
    p10 = est.predict(X[3000:], num_iteration=10)
    p40 = est.predict(X[3000:])
    assert np.std(p10) == pytest.approx(np.std(p40), rel=0.2)
    # and it learns what the SPEC forest learns on the same rows
    r2 = [1 - np.mean((y[3000:] - p) ** 2) / np.var(y[3000:]) for p in (p40, rf.predict(X[3000:]))]
    assert r2[0] > 0.6 and abs(r2[0] - r2[1]) < 0.05, r2


def test_selection_forest_mapping_follows_the_sklearn_selection_forest():
    from bqx.training.selection import SELECTION_FOREST, lgbm_selection_params

    p = lgbm_selection_params(SELECTION_FOREST, 809)
    assert p["boosting_type"] == "rf" and p["importance_type"] == "gain"
    assert p["n_estimators"] == SELECTION_FOREST["n_estimators"]
    assert p["max_depth"] == SELECTION_FOREST["max_depth"]
    assert p["num_leaves"] == 2 ** SELECTION_FOREST["max_depth"]
    assert p["min_child_samples"] == SELECTION_FOREST["min_samples_leaf"]
    assert p["subsample"] == SELECTION_FOREST["max_samples"] and p["subsample_freq"] == 1
    # a split sees sqrt(p) candidates on average: the per-tree draw times the per-split one
    assert p["colsample_bytree"] * p["feature_fraction_bynode"] * 809 == pytest.approx(28)
    # overrides in scikit-learn names are translated, LightGBM names pass through
    q = lgbm_selection_params({**SELECTION_FOREST, "n_estimators": 50, "max_bin": 255}, 809)
    assert q["n_estimators"] == 50 and q["max_bin"] == 255


@pytest.mark.parametrize("engine", ["sklearn", "lightgbm"])
def test_both_selection_engines_find_the_planted_features(engine):
    import pandas as pd

    from bqx.training.selection import select_features

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(8000, 120)).astype(np.float32))
    X.columns = [f"f{i}" for i in range(120)]
    y = 0.3 * X["f3"].to_numpy() - 0.2 * X["f77"].to_numpy() + rng.normal(size=8000)
    sel = select_features(X, y, rows=6000, max_features=5, engine=engine)
    assert set(sel.features[:2]) == {"f3", "f77"}
    assert sel.rows_used == 6000 and len(sel.importances) == 120
    with pytest.raises(ValueError, match="engine"):
        select_features(X, y, rows=6000, engine="nope")


def test_row_stride_fits_every_kth_row_ending_at_the_last_and_is_not_a_lightgbm_option():
    import pandas as pd

    from bqx.training.models import fit_pipeline, make_pipeline

    assert LGBM_RF["row_stride"] == 5 and LGBM_RF["max_bin"] == 63
    est = make_estimator("lgbm_rf", {"n_estimators": 5}, n_features=3)
    assert "row_stride" not in est.get_params()  # never passed to LightGBM
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(1003, 3)), columns=["a", "b", "c"])
    y = X["a"].to_numpy() + rng.normal(scale=0.1, size=1003)
    seen: list[np.ndarray] = []

    class Spy:  # records the rows the pipeline is fitted on
        def fit(self, Xs, ys):
            seen.append(np.asarray(ys))
            return self

    fit_pipeline(Spy(), X, y, {"row_stride": 5})  # type: ignore[arg-type]
    assert len(seen[0]) == 201 and seen[0][-1] == y[-1] and seen[0][0] == y[2]
    np.testing.assert_array_equal(seen[0], y[2::5])
    fit_pipeline(Spy(), X, y, {})  # type: ignore[arg-type]
    assert len(seen[1]) == 1003
    # a real pipeline with the default parameters fits and predicts
    p = resolve_params("lgbm_rf", {**LGBM_RF, "n_estimators": 10}, 3)
    pipe = fit_pipeline(make_pipeline(["a", "b", "c"], make_estimator("lgbm_rf", p)), X, y, p)
    assert np.corrcoef(pipe.predict(X), y)[0, 1] > 0.8
