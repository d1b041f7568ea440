"""JSON for results that hold numpy, pandas and datetime values (CLI ``--json``, metrics.json).

Timestamps become ISO strings, numpy scalars and arrays plain numbers and lists, DataFrames
lists of records, and NaN/inf become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def clean(o: Any) -> Any:
    """Replace non-finite floats by None, recursively; stringify dict keys."""
    if isinstance(o, float | np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean(v) for v in o]
    if o is pd.NaT:
        return None
    return o


def default(o: Any) -> Any:
    """``json.dumps(default=...)`` for the types above."""
    if isinstance(o, pd.Timestamp | datetime | date):
        return o.isoformat()
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
    if isinstance(o, pd.DataFrame):
        return clean(json.loads(o.to_json(orient="records", date_format="iso")))
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "as_dict"):
        return clean(o.as_dict())
    return str(o)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(clean(obj), indent=indent, default=default)
