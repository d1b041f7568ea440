"""Request and response models of the prediction API (they also document it at ``/docs``).

Requests forbid unknown fields: a typo such as ``"timstamp"`` is a 422 that names the field,
not a silently ignored option. Times are ISO 8601; a time without a zone is taken as UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error response: a stable machine code and what to fix."""

    error: str = Field(examples=["stale_data"])
    detail: str = Field(examples=["stale data: the last EURUSD bar is ... (tolerance 5 min)"])
    hint: str | None = None
    issues: list[dict[str, Any]] | None = Field(
        None, description="POST /v1/bars: one entry per bad bar (row is 1-based in 'bars')"
    )
    component: str | None = Field(
        None, description="503 only: the unavailable component (store, state, registry, ...)"
    )
    address: str | None = Field(
        None, description="503 only: scheme and fingerprint of the server address (redacted)"
    )


# -- prediction ------------------------------------------------------------------------------
class PredictRequest(_Strict):
    pair: StrictStr = Field(
        examples=["EURUSD"], description="One of the 28 pairs (eurusd, EUR/USD ok)"
    )
    timestamp: datetime | None = Field(
        None,
        examples=["2024-01-05T13:40:00Z"],
        description="Predict at the pair's last bar closed by this time (default: newest bar)",
    )
    risk_check: bool = Field(
        False, description="Add a pre-trade risk check with a recommended quantity"
    )
    explain: bool = Field(False, description="Add the SHAP explanation (computed synchronously)")
    strict: bool = Field(
        False,
        description="409 insufficient_data instead of prediction null when too many of the "
        "model's features are missing (serve.min_valid_features)",
    )


class PredictResponse(BaseModel):
    decision_id: str
    pair: str
    timestamp: str = Field(description="The as-of bar (its open time, UTC)")
    requested_timestamp: str | None
    available_at: str | None = Field(
        None,
        description="The as-of bar's close (UTC): the forecast uses no information after it. "
        "For a requested timestamp T it is <= T (bars that had closed by T)",
    )
    horizon_minutes: float
    prediction: float | None = Field(
        description="Forecast target in return units (0.0005 ≈ 5 pips)"
    )
    confidence_interval: list[float | None] = Field(description="[lo, hi] split-conformal interval")
    confidence_level: float
    signal: Literal["BUY", "SELL", "HOLD"]
    signal_strength: float = Field(ge=0, le=1)
    signal_reason: str
    threshold: float
    features_used: int
    model: str
    model_version: str
    feature_hash: str
    feature_cache_hit: bool
    latency_ms: float
    missing_features: list[str] | None = Field(
        None, description="with signal_reason insufficient_data: the selected features that are NaN"
    )
    arm: str = Field(
        "production",
        description="Which model answered: production, or during a rollout candidate / "
        "production, during an A/B experiment a / b",
    )


class BatchRequest(_Strict):
    items: list[Any] = Field(
        description="Each item is a PredictRequest ({pair, timestamp?}); items are validated "
        "one by one so one bad item does not fail the batch",
        examples=[[{"pair": "EURUSD"}, {"pair": "USDJPY", "timestamp": "2024-01-05T13:40:00Z"}]],
    )


class BatchItem(BaseModel):
    index: int
    ok: bool
    prediction: PredictResponse | None = None
    error: ErrorBody | None = None
    status: int = Field(description="The HTTP status this item alone would have had")


class BatchResponse(BaseModel):
    count: int
    failed: int
    results: list[BatchItem]


# -- features --------------------------------------------------------------------------------
class FeaturesResponse(BaseModel):
    pair: str
    timestamp: str = Field(description="The as-of bar")
    last_observed_bar: str
    feature_set_version: str
    n_features: int
    nan_features: int
    feature_hash: str
    cache_hit: bool
    source: Literal["cache", "store"]
    features: dict[str, float | None] | None = None


# -- bars ------------------------------------------------------------------------------------
class BarIn(_Strict):
    pair: StrictStr = Field(examples=["EURUSD"])
    ts: datetime = Field(examples=["2024-01-05T13:41:00Z"], description="Bar open time (UTC)")
    open: StrictFloat | StrictInt
    high: StrictFloat | StrictInt
    low: StrictFloat | StrictInt
    close: StrictFloat | StrictInt
    volume: StrictFloat | StrictInt | None = None
    spread: StrictFloat | StrictInt | None = None


class BarsRequest(_Strict):
    bars: list[BarIn] = Field(min_length=1)


class BarsResponse(BaseModel):
    inserted: int
    updated: int
    unchanged: int
    cache_updated: bool


# -- models ----------------------------------------------------------------------------------
class PromoteRequest(_Strict):
    version: StrictStr | StrictInt = Field(examples=["2"])
    reason: StrictStr | None = Field(None, max_length=500)


class RollbackRequest(_Strict):
    reason: StrictStr | None = Field(None, max_length=500)


class ModelActionResponse(BaseModel):
    pair: str
    action: Literal["promote", "rollback"]
    previous_version: str | None
    production_version: str
    serving_version: str | None = Field(description="What this worker now serves")


# -- health ----------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, Any]
    newest_bar: str | None
    models_cached: list[dict[str, Any]]
