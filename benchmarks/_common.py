"""What the benchmark scripts share: where raw results go and how they are written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(out: dict[str, Any], name: str, t0: float, c0: float, indent: int = 2) -> Path:
    """Add the run's wall and CPU seconds (since ``perf_counter`` ``t0`` and ``process_time``
    ``c0``) to ``out`` and write it as JSON to ``benchmarks/results/<name>`` (an absolute
    ``name`` is written where it says). Returns the path."""
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(time.process_time() - c0, 1)
    path = RESULTS / name
    path.write_text(json.dumps(out, indent=indent) + "\n")
    return path
