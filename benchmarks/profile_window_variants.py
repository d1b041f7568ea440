"""One-off profile of one walk-forward window (issue 15 item 5): CPU seconds of the read and
prepare stages, of lgbm_rf fit variants (bins, bagging fraction, row stride; with the test
month's R² of each, one window: indicative only) or of selection variants (with the Jaccard
overlap of the selected features vs scikit-learn's selection with seeds 42 and 43).

Usage: ``BQX_HOME=<home with data + features> .venv/bin/python
benchmarks/profile_window_variants.py <seed> <pair> fit|sel`` (the seed is only a label; the
first window of a 2-window plan is profiled). Prints one JSON line per variant.
"""
# ruff: noqa: E402, E741

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

seed = int(sys.argv[1])
pair = sys.argv[2]
part = sys.argv[3]
home = Path(os.environ["BQX_HOME"])
from bqx.backtest.walkforward import WalkForwardConfig, _feature_store, plan_windows
from bqx.config import Settings
from bqx.training.models import default_params, make_estimator, make_pipeline, resolve_params
from bqx.training.selection import select_features
from bqx.training.shrinkage import fit_shrinkage
from bqx.training.train import prepare

s = Settings(home=home)
cfg = WalkForwardConfig(windows=2, model="lgbm_rf")
spec = plan_windows([pair], s, cfg)[0]
C = time.process_time
c0 = C()
raw = _feature_store(s).read(spec.pair, spec.train_start, spec.test_end)
t_read = C() - c0
c0 = C()
train = prepare(raw[raw.index <= spec.train_end])
test = prepare(raw[raw.index >= spec.test_start], require_target=False)
t_prep = C() - c0
gap = s.horizon + 1
n_cal = int(len(train) * 0.15)
fit_rows = len(train) - n_cal - gap
Xf = train.iloc[:fit_rows].drop(columns=["target"])
yf = train["target"].to_numpy(np.float64)[:fit_rows]
Xc = train.iloc[-n_cal:].drop(columns=["target"])
yc = train["target"].to_numpy(np.float64)[-n_cal:]
Xt = test.drop(columns=["target"])
yt = test["target"].to_numpy(np.float64)
out = {
    "pair": pair,
    "seed": seed,
    "read_cpu": t_read,
    "prepare_cpu": t_prep,
    "fit_rows": fit_rows,
    "n_cal": n_cal,
    "test_rows": len(test),
    "load": os.getloadavg(),
}
print(json.dumps(out), flush=True)


def r2(y, p):
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    return 1 - np.sum((y - p) ** 2) / np.sum(y**2)


if part == "sel":
    res = {}
    for name, eng, params in [
        ("sk42", "sklearn", {}),
        ("sk43", "sklearn", {"random_state": 43}),
        ("lgb", "lightgbm", {}),
        ("lgb43", "lightgbm", {"random_state": 43}),
        ("lgb_100t", "lightgbm", {"n_estimators": 100}),
        ("lgb_cs15", "lightgbm", {"colsample_bytree": 0.15}),
        ("lgb_bc2k", "lightgbm", {"bin_construct_sample_cnt": 2000}),
        ("lgb_mb31", "lightgbm", {"max_bin": 31}),
    ]:
        c0 = C()
        sel = select_features(Xf, yf, engine=eng, params=params, n_jobs=1)
        c = C() - c0
        res[name] = (sel.features, c)
        print(name, round(c, 2), len(sel.features), flush=True)
    a = set(res["sk42"][0])
    b = set(res["sk43"][0])
    l = set(res["lgb"][0])

    def J(x: set[str], y: set[str]) -> float:
        return len(x & y) / len(x | y)

    for k, (f, c) in res.items():
        print(
            json.dumps(
                {
                    "variant": k,
                    "cpu": round(c, 2),
                    "J_sk42": round(J(set(f), a), 3),
                    "J_sk43": round(J(set(f), b), 3),
                    "J_lgb": round(J(set(f), l), 3),
                }
            ),
            flush=True,
        )
    Path(f"sel_{seed}_{pair}.json").write_text(json.dumps({k: v[0] for k, v in res.items()}))
else:
    feats = select_features(Xf, yf, engine="lightgbm", n_jobs=1).features
    variants = [
        ("base255", {}),
        ("mb63", {"max_bin": 63}),
        ("mb63_bc20k", {"max_bin": 63, "bin_construct_sample_cnt": 20000}),
        ("mb63_ss20", {"max_bin": 63, "subsample": 0.2}),
        ("mb63_ss10", {"max_bin": 63, "subsample": 0.1}),
        ("mb63_ss20_bc20k", {"max_bin": 63, "subsample": 0.2, "bin_construct_sample_cnt": 20000}),
        (
            "mb63_ss10_bc20k_mcs30",
            {
                "max_bin": 63,
                "subsample": 0.1,
                "bin_construct_sample_cnt": 20000,
                "min_child_samples": 30,
            },
        ),
        ("stride5_mb63", {"max_bin": 63, "_stride": 5}),
        ("stride10_mb63", {"max_bin": 63, "_stride": 10}),
    ]
    for name, p in variants:
        p = dict(p)
        k = p.pop("_stride", 1)
        # the lgbm_rf of before issue 15 item 5 (255 bins, all rows), then each variant
        base = {**default_params("lgbm_rf"), "max_bin": 255, "row_stride": 1}
        pp = resolve_params("lgbm_rf", {**base, **p}, len(feats))
        pipe = make_pipeline(feats, make_estimator("lgbm_rf", pp, n_jobs=1))
        c0 = C()
        pipe.fit(Xf.iloc[::k], yf[::k])
        cf = C() - c0
        c0 = C()
        pc = np.asarray(pipe.predict(Xc))
        sh = fit_shrinkage(yc, pc, s.horizon)
        pt = sh.apply(np.asarray(pipe.predict(Xt)))
        cp = C() - c0
        print(
            json.dumps(
                {
                    "variant": name,
                    "fit_cpu": round(cf, 2),
                    "cal+pred_cpu": round(cp, 2),
                    "r2_test": round(float(r2(yt, pt)), 4),
                    "r2_raw": round(float(r2(yt, np.asarray(pipe.predict(Xt)))), 4),
                    "load": os.getloadavg()[0],
                }
            ),
            flush=True,
        )
