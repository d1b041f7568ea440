"""JSON for results that hold numpy, pandas and datetime values (CLI ``--json``, metrics.json).

Timestamps become ISO strings, numpy scalars and arrays plain numbers and lists, DataFrames
lists of records, and NaN/inf become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

# numpy and pandas are not imported here (~0.5-1 s, issue 15: `bqx models list --json`
# needs neither): a value can only be one of their types once they are imported.


def clean(o: Any) -> Any:
    """Replace non-finite floats by None, recursively; stringify dict keys."""
    if isinstance(o, float):  # np.float64 is a float subclass
        return float(o) if math.isfinite(o) else None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(o, np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean(v) for v in o]
    pd = sys.modules.get("pandas")
    if pd is not None and o is pd.NaT:
        return None
    return o


def default(o: Any) -> Any:
    """``json.dumps(default=...)`` for the types above."""
    if isinstance(o, datetime | date):  # pd.Timestamp is a datetime
        return o.isoformat()
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return clean(float(o))
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
    if isinstance(o, Path):
        return str(o)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(o, pd.DataFrame):
        return clean(json.loads(o.to_json(orient="records", date_format="iso")))
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "as_dict"):
        return clean(o.as_dict())
    return str(o)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(clean(obj), indent=indent, default=default)
