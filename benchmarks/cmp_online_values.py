"""How far the online feature values of two codes are apart (issue 15: the compiled kernels
change the online values at the rounding level). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/cmp_online_values.py --old-src OLD/src \\
        [--out benchmarks/results/online_values_old_new.json]

Each code, in its own process (``PYTHONPATH=<src>``), computes the full ``at_array`` (all
809 columns) for 4 pairs at 57 bars each of the same simulated panel (9 days, seed 5, the
tests' ``bars_medium``); the parent compares: whether NaN sits at the same cells, the share
of cells equal bit for bit, of columns equal bit for bit, and the largest difference
relative to the column's median magnitude (and its column).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

PAIRS = ("EURUSD", "USDJPY", "GBPNZD", "AUDCAD")


def _dump(path: str) -> None:
    from bqx.data.simulator import generate
    from bqx.features import pipeline as F
    from bqx.features.panel import Panel

    panel = Panel.from_bars(generate(days=9, seed=5, start="2024-03-04").bars)
    ts = panel.timestamps()
    rows = [
        F.at_array(panel, pair, ts[k])[0]
        for pair in PAIRS
        for k in range(len(ts) - 1, len(ts) - 400, -7)
    ]
    np.save(path, np.array(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src", required=True)
    ap.add_argument("--new-src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--out")
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.dump:
        _dump(a.dump)
        return
    tmp = Path(tempfile.mkdtemp())
    vals = {}
    for name, src in (("old", a.old_src), ("new", a.new_src)):
        f = str(tmp / f"{name}.npy")
        env = {"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
        subprocess.run(
            [sys.executable, __file__, "--old-src", "-", "--dump", f], env=env, check=True
        )
        vals[name] = np.load(f)
    sys.path.insert(0, a.new_src)
    from bqx.features import pipeline as F

    old, new = vals["old"], vals["new"]
    cols = F.columns()
    scale = np.nanmedian(np.abs(old), axis=0)
    scale[~(scale > 0)] = 1.0
    rel = np.nan_to_num(np.abs(old - new) / scale, nan=0.0)
    same = (old == new) | (np.isnan(old) & np.isnan(new))
    worst = int(np.argmax(rel.max(axis=0)))
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "old_src": a.old_src,
        "new_src": a.new_src,
        "vectors": int(old.shape[0]),
        "columns": int(old.shape[1]),
        "nan_cells_identical": bool(np.array_equal(np.isnan(old), np.isnan(new))),
        "share_cells_bit_identical": round(float(same.mean()), 4),
        "share_columns_bit_identical": round(float(same.all(axis=0).mean()), 4),
        "max_diff_rel_to_column_median": float(f"{rel.max():.3g}"),
        "max_diff_column": cols[worst],
    }
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
