"""Human-readable uncertainty of a version's metrics (``bqx models show``): ``0.012 ± 0.030``."""

from __future__ import annotations

from typing import Any

from bqx.stats import Estimate


def uncertainty_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Rows of (figure, value ± 95 % half-width, n_eff) for the test metrics and the R² gain
    over each naive baseline; empty for versions trained before intervals existed."""
    rows: list[dict[str, str]] = []
    for k, d in (metrics.get("test_estimates") or {}).items():
        rows.append(_row(f"test {k}", d))
    for k, d in (metrics.get("skill_test") or {}).items():
        e = Estimate.from_dict(d)
        sure = "yes" if e.finite and e.lo > 0 else "no"
        rows.append({**_row(f"R² gain vs {k}", d), "better?": f"{sure} ({e.level:.0%})"})
    return rows


def _row(name: str, d: dict[str, Any]) -> dict[str, str]:
    e = Estimate.from_dict(d)
    return {
        "figure": name,
        "value ± 95%": e.fmt(),
        "n_eff": f"{e.n_eff:.0f}" if e.finite else "-",
        "better?": "",
    }
