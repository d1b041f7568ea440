"""docs/features.md is generated from the code and must match it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_feature_docs", ROOT / "scripts" / "gen_feature_docs.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_features_doc_matches_code(tmp_path: Path) -> None:
    gen = _generator()
    out = tmp_path / "features.md"
    out.write_text(gen.render())
    committed = (ROOT / "docs" / "features.md").read_text()
    assert out.read_text() == committed, (
        "docs/features.md is stale: run `.venv/bin/python scripts/gen_feature_docs.py`"
    )
    # a few facts the document must state
    assert "809 candidate columns from 228 base features" in committed
    assert "### technical (45 base features" in committed
    assert "| `rsi_14` |" in committed


def test_rounding_up_helper() -> None:
    gen = _generator()
    assert gen._up(0.0) == "0"
    assert gen._up(1.23e-11) == "2e-11"
    assert gen._up(9.5e-8) == "1e-07"
    assert gen._up(3e-9) == "3e-09"
