"""No forecast from missing inputs (issue 10): a 9-hour feed gap inside trading time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.calendar import surely_open
from bqx.data.store import open_store
from bqx.errors import InsufficientDataError
from bqx.serving.service import PredictionService

from .conftest import hdr


def _gap_end(settings) -> pd.Timestamp:
    """A bar at least a day before the newest EURUSD bar whose previous 9 hours are all
    surely-open trading time; deletes those 9 hours of EURUSD bars (the feed outage)."""
    store = open_store(settings=settings)
    bars = store.read(pairs="EURUSD")
    ts = pd.DatetimeIndex(bars["ts"])
    last = ts.max()
    for t in ts[::-1]:
        if t > last - pd.Timedelta(days=1):
            continue
        span = pd.date_range(t - pd.Timedelta(hours=9), t, freq="1min")
        if surely_open(span).all():
            break
    else:  # pragma: no cover - the fixture data has open time
        pytest.fail("no 9 h of trading time in the fixture data")
    with store._conn(read_only=False) as con:
        con.execute(
            "DELETE FROM bars WHERE pair = 'EURUSD' AND ts > ? AND ts < ?",
            [(t - pd.Timedelta(hours=9)).to_pydatetime(), t.to_pydatetime()],
        )
    store.close()
    return t


def test_feed_gap_returns_insufficient_data_listing_missing_features(settings, keys):
    t = _gap_end(settings) + pd.Timedelta(minutes=1)  # the first bar after the gap has closed
    svc = PredictionService(settings, live=False)
    p = svc.predict("EURUSD", t.isoformat(), log=False)
    d = p.as_dict()
    assert d["prediction"] is None
    assert d["signal"] == "HOLD" and d["signal_reason"] == "insufficient_data"
    art = svc.model("EURUSD")
    missing = d["missing_features"]
    assert missing and set(missing) <= set(art.features)
    assert len(missing) > (1 - settings.serve.min_valid_features) * len(art.features)
    print(f"gap: {len(missing)} of {len(art.features)} selected features missing")
    fv = svc.features("EURUSD", t.isoformat())
    idx = [art.all_columns.index(c) for c in art.features]
    assert sorted(missing) == sorted(
        c for c, v in zip(art.features, fv.values[idx], strict=True) if not np.isfinite(v)
    )
    assert svc.ready()["insufficient_data"]["EURUSD"] == p.timestamp.isoformat()
    with pytest.raises(InsufficientDataError) as e:
        svc.predict("EURUSD", t.isoformat(), log=False, strict=True)
    assert e.value.missing == missing
    # a bar long before the gap still forecasts
    ok = svc.predict("EURUSD", (t - pd.Timedelta(hours=30)).isoformat(), log=False)
    assert ok.signal_reason != "insufficient_data" and np.isfinite(ok.prediction)
    svc.close()
    # the API: 200 with prediction null, or 409 when strict
    from fastapi.testclient import TestClient

    from bqx.serving.app import create_app

    with TestClient(create_app(settings)) as client:
        _api(client, t, keys, missing)


def _api(client, t, keys, missing) -> None:
    r = client.post("/v1/predict", json={"pair": "EURUSD", "timestamp": t.isoformat()},
                    headers=hdr(keys["reader"]))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] is None and r.json()["signal_reason"] == "insufficient_data"
    assert r.json()["missing_features"] == missing
    r = client.post(
        "/v1/predict",
        json={"pair": "EURUSD", "timestamp": t.isoformat(), "strict": True},
        headers=hdr(keys["reader"]),
    )
    assert r.status_code == 409 and r.json()["error"] == "insufficient_data", r.text
