"""Issue 18 item 8: every figure in a table of docs/performance.md comes from a benchmark's raw
output in benchmarks/results/ (or its row/table is marked one-off or quoted from MEASURED.md),
and the README's parity claim is the tolerance the parity test enforces."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
#: figures are printed as-is, in thousands/millions, in percent, or seconds <-> ms/min
SCALES = (1.0, 1e3, 1e-3, 1e-6, 100.0, 1 / 60)


def _result_values() -> list[float]:
    out: list[float] = []

    def walk(o: object) -> None:
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, int | float) and not isinstance(o, bool):
            out.append(float(o))

    dec = json.JSONDecoder()
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        text, i = f.read_text(), 0
        while text[i:].strip():  # a file may hold several JSON documents
            j = len(text) - len(text[i:].lstrip())
            obj, n = dec.raw_decode(text[j:])
            walk(obj)
            i = j + n
    return out


def _backed(tok: str, values: list[float]) -> bool:
    x = float(tok.replace(",", ""))
    places = len(tok.split(".")[1]) if "." in tok else 0
    tol = 0.51 * 10.0**-places if places else max(0.51, 0.005 * x)
    return any(abs(v * k - x) <= tol for v in values for k in SCALES)


def test_performance_tables_come_from_benchmark_outputs() -> None:
    values = _result_values()
    unbacked = []
    lines = (ROOT / "docs" / "performance.md").read_text().splitlines()
    marked = False  # the paragraph before the current table says one-off
    for n, line in enumerate(lines, 1):
        if not line.startswith("|"):
            if line.strip():
                marked = "one-off" in line.lower() or (marked and not line.startswith("#"))
            continue
        if set(line) <= set("|-: ") or marked or "one-off" in line or "MEASURED" in line:
            continue
        cells = [c for c in line.strip("|").split("|")][1:]  # the first cell is the setup
        for tok in NUMBER.findall(" ".join(cells)):
            if len(tok.replace(",", "").replace(".", "")) >= 2 and not _backed(tok, values):
                unbacked.append(f"line {n}: {tok}")
    assert not unbacked, "figures without a benchmark output: " + ", ".join(unbacked)


def test_readme_parity_claim_is_the_tested_tolerance() -> None:
    readme = (ROOT / "README.md").read_text()
    claim = re.search(r"equals the batch path \(`build`\) to within (\S+) of each", readme)
    test = (ROOT / "tests" / "features" / "test_parity.py").read_text()
    tested = re.search(r"assert worst < (\S+)", test)
    assert claim and tested and float(claim.group(1)) == float(tested.group(1))
