"""Settings: defaults < ``bqx.toml`` < ``BQX_*`` environment variables < explicit arguments.

Everything BQX reads from the outside world is here. Paths are derived from the project
home (``./.bqx`` by default, ``BQX_HOME``), so a test only needs a temporary home.

Nested sections map to TOML tables and to ``BQX_<SECTION>__<FIELD>`` variables, e.g.
``[serve] port = 8080`` or ``BQX_SERVE__PORT=8080``.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bqx.errors import ConfigError

#: seconds per unit of the plain ``<integer><unit>`` durations (pandas' spelling and
#: meaning; tests/test_config.py checks each against ``pd.Timedelta``)
_UNIT_S = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("min", "minute", "minutes", "m"), 60),
    **dict.fromkeys(("h", "hour", "hours", "hr"), 3600),
    **dict.fromkeys(("D", "day", "days"), 86400),
}
_DURATION = re.compile(r"(\d{1,9})([A-Za-z]+)")


def parse_duration(v: str) -> timedelta:
    """``pd.Timedelta(v).to_pytimedelta()`` without importing pandas (~0.5-1 s) for the
    plain forms (``1min``, ``5s``, ``1h``, ``1D``); anything else is parsed by pandas."""
    m = _DURATION.fullmatch(v) if isinstance(v, str) else None
    if m is not None and m.group(2) in _UNIT_S:
        return timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])
    import pandas as pd

    td = pd.Timedelta(v)
    if td is pd.NaT:  # pd.Timedelta("nat"): not a duration
        raise ValueError(f"{v!r} is not a duration")
    return td.to_pytimedelta()


class TrainSettings(BaseModel):
    """Training defaults (SPEC section 4)."""

    model: Literal["rf", "lightgbm", "lgbm_rf", "xgboost", "ridge"] = "lgbm_rf"
    train_frac: float = 0.70
    val_frac: float = 0.15
    selection_threshold: float = Field(0.95, gt=0, le=1)
    max_features: int = Field(70, ge=1)
    #: Rows (a random subsample of the training segment) the selection forest sees.
    selection_rows: int = Field(30_000, ge=1000)
    #: Overrides of the selection forest (bqx.training.selection.SELECTION_FOREST).
    selection_params: dict[str, Any] = Field(default_factory=dict)
    #: Which library fits the selection forest: "sklearn" (exact splits) or "lightgbm" (its
    #: random-forest mode on 63-bin histograms, the same forest mapped; issue 15 item 5).
    selection_engine: Literal["sklearn", "lightgbm"] = "lightgbm"
    interval_level: float = Field(0.90, gt=0, lt=1)
    #: "scaled": residuals normalised by recent realised volatility (adapts to regimes);
    #: "absolute": plain split-conformal residual quantile.
    interval_method: Literal["scaled", "absolute"] = "scaled"
    #: Approval rule: "beats_naive" (R² and directional accuracy both beat the naive
    #: baselines on the test segment), "always" or "never" (manual approval only).
    approval_rule: Literal["beats_naive", "always", "never"] = "beats_naive"
    #: Confidence of "beats naive": the lower end of this two-sided interval of the test R²
    #: gain over every naive baseline (HAC, overlap-aware) must be > 0; 0 = point estimates.
    approval_level: float = Field(0.95, ge=0, lt=1)
    jobs: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    seed: int = 42
    #: An existing Ray cluster (``host:6379``, ``auto`` or ``ray://host:10001``) for
    #: ``--backend ray``; unset: a private local Ray (``RAY_ADDRESS`` is honoured too).
    ray_address: str | None = None


class ServeSettings(BaseModel):
    """Prediction service settings (SPEC section 5)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    cache_size: int = Field(10, ge=1)
    prewarm: list[str] = Field(default_factory=list)
    #: Seconds between checks of the ``production`` alias for promotions/rollbacks.
    alias_ttl_s: float = 5.0
    #: A request whose as-of bar is older than this (minutes) before the requested time is refused.
    stale_tolerance_min: float = 5.0
    #: When no timestamp is given, also refuse if the newest bar is this old vs. the wall clock
    #: (minutes; 0 disables: useful for historical or simulated data).
    wallclock_stale_min: float = 0.0
    max_batch: int = Field(100, ge=1)
    rate_limit: float = Field(100.0, gt=0, description="requests/second per key (token bucket)")
    #: ``redis://host:6379/0``: one shared token bucket per key across all workers and hosts.
    #: Unset: buckets are per worker process (a key gets up to workers × rate_limit).
    rate_limit_url: str | None = None
    max_body_bytes: int = 1_000_000
    cors_origins: list[str] = Field(default_factory=list)
    #: Seconds between refreshes of the in-memory bar cache from the store.
    bars_refresh_s: float = 1.0
    #: Share of a version's selected features that must be finite to forecast; below it the
    #: answer is prediction null, HOLD, reason insufficient_data (bqx.training.validity).
    #: 0.75: just below the lowest share among the rows training keeps (0.757 measured,
    #: docs/performance.md), so serving refuses only inputs unlike any training row.
    min_valid_features: float = Field(0.75, ge=0, le=1)
    #: Seconds between reads of the active rollouts/experiments (every worker follows a
    #: change within this time; <= 5 s).
    rollout_refresh_s: float = Field(1.0, gt=0, le=5)

    @field_validator("rate_limit_url")
    @classmethod
    def _check_rate_limit_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"rate_limit_url {v!r} must be redis://host:port/db, rediss://... or "
                "unix:///path/redis.sock (or unset for per-worker limits)"
            )
        return v


class SignalSettings(BaseModel):
    """Prediction -> BUY/SELL/HOLD (SPEC section 5)."""

    threshold: float = Field(0.0005, gt=0)
    pair_thresholds: dict[str, float] = Field(default_factory=dict)
    #: Scale the threshold by (recent volatility / its long-run median) when True.
    vol_scaling: bool = False
    #: Daily rollover no-trade window around 17:00 New York, minutes either side.
    rollover_minutes: int = 5


class BacktestSettings(BaseModel):
    """Execution costs, exits, sizing and leakage alarms of ``bqx backtest`` (SPEC section 6).

    A team's cost model belongs in ``bqx.toml`` (``[backtest]``), not in every command
    line; each ``bqx backtest`` option overrides its field for one run.
    """

    #: Exits: fractions of the entry price (0 = off). The time-out defaults to the horizon.
    take_profit: float = Field(0.01, ge=0, lt=1)
    stop_loss: float = Field(0.005, ge=0, lt=1)
    #: Time-out in bars; None = the forecast horizon, 0 = off.
    timeout_bars: int | None = Field(None, ge=0)
    reverse: bool = False
    #: Fixed bid-ask spread in pips; None = the bars' spread column.
    spread_pips: float | None = Field(None, ge=0)
    slippage_pips: float = Field(0.0, ge=0)
    #: Commission per side, account currency per million notional.
    commission_per_million: float = Field(0.0, ge=0)
    capital: float = Field(100_000.0, gt=0)
    sizing: Literal["fixed", "kelly"] = "fixed"
    fraction: float = Field(1.0, ge=0)
    kelly_fraction: float = Field(0.25, ge=0)
    kelly_min_trades: int = Field(30, ge=1)
    max_leverage: float = Field(10.0, gt=0)
    #: Leakage alarm: out-of-sample R², directional accuracy and net Sharpe above these.
    alarm_r2: float = 0.3
    alarm_accuracy: float = 0.6
    alarm_sharpe: float = 3.0
    #: Walk-forward windows.
    train_months: int = Field(6, ge=1)
    test_months: int = Field(1, ge=1)
    windows: int = Field(12, ge=1)


class OpsSettings(BaseModel):
    """The operator (``bqx ops run``): schedule, lease and retraining triggers."""

    #: Seconds between operator ticks (lease renewal happens every tick).
    tick_s: float = Field(5.0, gt=0)
    #: Lease time-to-live: a standby takes over at most this long after the leader dies.
    lease_ttl_s: float = Field(15.0, gt=0)
    #: Seconds between maturing + monitoring passes (drift and quality checks).
    monitor_every_s: float = Field(300.0, gt=0)
    #: Scheduled retraining: every this many days (default monthly), 0 = off.
    retrain_every_days: float = Field(30.0, ge=0)
    #: A retrain uses the latest this many months of bars.
    retrain_months: int = Field(6, ge=1)
    #: Pairs the operator manages ("all" = every pair with a production version).
    pairs: list[str] = Field(default_factory=lambda: ["all"])
    #: Open alerts (critical) of these rules trigger a retrain.
    drift_rules: list[str] = Field(default_factory=lambda: ["drift"])
    #: alert rules that trigger a retrain; "quality_r2_drop" is what bqx.monitoring raises
    quality_rules: list[str] = Field(
        default_factory=lambda: ["quality", "quality_drop", "quality_r2_drop"]
    )
    #: No alert-triggered retrain of a pair within this many hours of its last trigger
    #: (a persisting alert whose candidates fail the gate must not retrain in a loop).
    retrain_cooldown_h: float = Field(6.0, ge=0)
    #: Quality check: matured R² of production this much below its test R² (and the
    #: drop significant at 95 %, HAC) raises a critical ``quality_drop`` alert.
    quality_drop: float = Field(0.05, ge=0)
    quality_min_samples: int = Field(200, ge=10)
    #: Gate: one-sided p-value of "candidate worse" (Diebold-Mariano, HAC) below this fails.
    gate_alpha: float = Field(0.05, gt=0, lt=1)
    gate_min_rows: int = Field(200, ge=10)
    #: Gate window: the most recent this many bars after both versions' training windows.
    gate_bars: int = Field(5000, ge=100)
    #: Start a rollout (shadow first) automatically for a candidate that passes the gate.
    auto_rollout: bool = True


class OnlineSettings(BaseModel):
    """Online learning (``bqx online``, :mod:`bqx.online`): small gated updates of the
    production version on the most recent matured bars."""

    #: Hours between online updates of an enabled pair (the operator's ``online`` job);
    #: 0 = the job is off (default). 24 = at most once a day.
    every_h: float = Field(0.0, ge=0)
    #: Matured bars the update fits on (the most recent, before the calibration and check
    #: segments).
    window_bars: int = Field(20_000, ge=100)
    #: Bars after the fit segment (and a purge gap) on which the shrinkage β and the
    #: intervals are recalibrated: out of sample for the update.
    calibration_bars: int = Field(3_000, ge=50)
    #: The most recent matured bars, held out for the stability check and the gate (the
    #: gate scores only bars after the update's fit and calibration segments).
    check_bars: int = Field(3_000, ge=50)
    #: Half-life in bars of the exponential sample weights inside the fit window (recent
    #: rows count more); 0 = equal weights.
    half_life_bars: float = Field(5_000.0, ge=0)
    #: Ridge: strength of the pull toward the parent's coefficients (None: the parent's
    #: ``alpha``). The update solves min Σ w_i (y_i - x_i·b)² + α‖b - b_parent‖².
    ridge_alpha: float | None = Field(None, gt=0)
    #: LightGBM: "boost" adds ``lgbm_rounds`` trees fitted on the window (init_model =
    #: the parent); "refit" re-estimates the parent's leaf values on the window with
    #: ``lgbm_decay`` (new = decay·old + (1 - decay)·fitted). Default chosen by
    #: benchmarks/bench_online.py (docs/performance.md): refit, as good as
    #: boost within noise, faster, and the model does not grow by lgbm_rounds trees a day.
    lgbm_method: Literal["boost", "refit"] = "refit"
    lgbm_rounds: int = Field(20, ge=1)
    lgbm_decay: float = Field(0.9, ge=0, lt=1)
    #: Rejections in a row (stability check failed) that pause online learning of a pair.
    max_rejections: int = Field(3, ge=1)


class RolloutSettings(BaseModel):
    """Rollout steps, dwell times and the automatic rollback guard."""

    #: Candidate traffic shares of the canary steps, ascending, ending below or at 1.
    steps: list[float] = Field(default_factory=lambda: [0.10, 0.50])
    #: Keep the candidate's shadow calls on for the production-answered requests during the
    #: canary steps (more paired bars when each bar gets few requests; costs a second model
    #: call and decision-log row per request). Off: canary pairs come from bars both arms
    #: answered (many clients polling the newest bar).
    shadow_during_canary: bool = False
    #: Seconds in shadow before the first canary step.
    shadow_s: float = Field(3600.0, ge=0)
    #: Seconds at each canary step before advancing.
    dwell_s: float = Field(3600.0, ge=0)
    #: Matured paired samples needed to advance (fewer = hold).
    min_samples: int = Field(100, ge=0)
    #: Requests of the candidate arm needed before error rate / p99 are judged.
    min_requests: int = Field(20, ge=1)
    #: Rollback when the candidate's error rate exceeds this (errors / requests).
    max_error_rate: float = Field(0.02, ge=0, le=1)
    #: Rollback when the candidate's p99 latency (ms) exceeds this and the baseline's by
    #: ``p99_factor``.
    max_p99_ms: float = Field(50.0, gt=0)
    p99_factor: float = Field(2.0, ge=1)
    #: Rollback when paired matured quality is significantly worse (one-sided DM p-value).
    quality_alpha: float = Field(0.01, gt=0, lt=1)
    #: |prediction| above this (in target units) is garbage: counted as an error.
    max_abs_prediction: float = Field(1.0, gt=0)


class RegimeSettings(BaseModel):
    """Regime detector (bqx.decision.regime): fitted with each model, served with each forecast."""

    enabled: bool = True
    #: scale signal strength by (1 - normalised regime entropy), floored at ``scale_floor``
    scale_signal: bool = True
    scale_floor: float = Field(0.0, ge=0, le=1)
    #: alert when the entropy stays above this many bits (max log2(3) = 1.585) ...
    entropy_alert_bits: float = Field(1.3, gt=0)
    #: ... for this many minutes of bars
    entropy_alert_minutes: float = Field(60.0, gt=0)
    #: EM restarts (best likelihood wins), iterations per restart, and the most recent
    #: training bars the HMM is fitted on (fit time grows linearly: ~1 s per 1,000 bars
    #: per restart on a loaded 2-core machine)
    restarts: int = Field(3, ge=1)
    n_iter: int = Field(100, ge=100)
    #: most recent training observations (one per trading-time hour) the HMM is fitted on
    fit_rows: int = Field(5_000, ge=500)
    #: also model the pair's return in the hidden state's emissions (default: market
    #: volatility only; bull / bear come from each state's mean return; see
    #: bqx.decision.regime.fit_regime)
    return_in_state: bool = False


class RiskSettings(BaseModel):
    """Portfolio limits of the risk manager (bqx.decision.risk; seed 003 defaults)."""

    account_currency: str = "USD"
    initial_cash: float = Field(1_000_000.0, gt=0)
    max_position_frac: float = Field(0.25, gt=0)
    max_currency_net_frac: float = Field(0.5, gt=0)
    max_leverage: float = Field(1.5, gt=0)
    max_daily_loss_frac: float = Field(0.02, gt=0)
    max_var_frac: float = Field(0.02, gt=0)
    var_level: float = Field(0.95, gt=0.5, lt=1)
    #: bars of history for the covariance (1-day VaR scales 1-bar moments by bars per day)
    var_window_bars: int = Field(5 * 1440, ge=100)


class ForensicsSettings(BaseModel):
    """Per-decision explanations (bqx.decision.forensics)."""

    #: explanations older than this are deleted by ``bqx forensics purge``
    retention_days: float = Field(90.0, gt=0)
    #: seconds the worker waits when nothing is pending
    poll_s: float = Field(1.0, gt=0)
    #: the worker's most CPU time as a share of wall time: after each explanation it
    #: sleeps so that busy / (busy + sleep) <= this (1 = no pause). Off by default: with
    #: the DuckDB store a capped, low-priority worker raised the client's p99 MORE than an
    #: uncapped nice-10 one, while the worker still opened the store for every decision
    #: (file-lock waits; now once per batch; docs/performance.md, decision layer)
    max_cpu_share: float = Field(1.0, gt=0, le=1)
    #: run the worker in the idle scheduling class (Linux SCHED_IDLE: it gets CPU only
    #: when no normal process wants it; else nice); off by default for the same reason
    idle_priority: bool = False


class EventsSettings(BaseModel):
    """Event stream (bqx.events): decisions and lifecycle events to a broker when set."""

    #: ``redis://host:port/db`` (Redis Streams); unset: no events are published
    url: str | None = None
    poll_s: float = Field(1.0, gt=0)


class ResilienceSettings(BaseModel):
    """Behaviour during infrastructure outages (see docs/operations.md)."""

    #: Decisions held in memory while the state database is down, before spilling to disk.
    #: 0 = every failed batch goes straight to the fsync'd spill file (survives ``kill -9``).
    decision_memory_rows: int = Field(1_000, ge=0)
    #: Directory of the per-worker decision spill files (default ``<home>/spill``).
    spill_dir: Path | None = None
    #: Cap of the reconnect backoff (seconds): readiness recovers within about this much
    #: after a database returns.
    reconnect_max_s: float = Field(2.0, gt=0)
    #: Seconds a request may wait for an API-key lookup in the state database.
    auth_timeout_s: float = Field(2.0, gt=0)
    #: Seconds ``/readyz`` waits for its checks before answering not ready.
    ready_timeout_s: float = Field(3.0, gt=0)


class MonitorSettings(BaseModel):
    """Monitoring (``[monitor]``): input capture for drift (see bqx.monitoring)."""

    #: Processes that compute a monitoring pass's input drift: > 1 deals the (pair, version)
    #: groups to that many forked workers while the pass matures decisions and computes
    #: live quality (shorter wall time with idle cores; on a busy host it costs CPU and was
    #: slower, docs/performance.md). The report is the same either way.
    workers: int = Field(1, ge=1, le=64)
    #: Share of served decisions whose model inputs are captured (0 = off).
    capture_rate: float = Field(1.0, ge=0, le=1)
    #: Captured inputs older than this many days are purged by the monitoring pass.
    capture_retention_days: float = Field(30, gt=0)
    #: Each serving process writes its per-route request counts and latency histogram to
    #: the state DB this often (seconds); monitoring's operational rules read them.
    stats_flush_s: float = Field(15, gt=0)
    #: Critical ``http_5xx_rate`` alert when a route's 5xx share over the last
    #: ``error_window_min`` minutes exceeds this (SPEC: 5 % over 5 min).
    error_rate_critical: float = Field(0.05, ge=0, le=1)
    error_window_min: float = Field(5, gt=0)
    #: Warning ``http_latency_p99`` alert when a route's p99 over the last
    #: ``latency_window_min`` minutes exceeds this many ms (SPEC: 500 ms over 10 min).
    p99_warning_ms: float = Field(500, gt=0)
    latency_window_min: float = Field(10, gt=0)
    #: Fewer requests than this in a window: no verdict (a single failed request of two
    #: is not a 50 % error rate worth waking someone for).
    ops_min_requests: int = Field(20, ge=1)
    #: Request statistics older than this (hours) are purged by the monitoring pass.
    stats_retention_h: float = Field(24, gt=0)
    #: Alert notifiers (the log notifier is always on). A Slack-compatible webhook URL
    #: (shown as ``scheme://host/...`` by ``bqx config show``: the path is the secret).
    webhook_url: str | None = None
    #: E-mail over SMTP: ``smtp_host`` enables it. The password is never a setting: it is
    #: read from the environment variable named by ``smtp_password_env`` when sending.
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "bqx@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password_env: str = "BQX_SMTP_PASSWORD"
    #: A firing alert is notified again after this many hours (not once acknowledged).
    repeat_interval_h: float = Field(4, gt=0)
    #: Seconds between refreshes of the service's monitoring gauges and /dashboard data
    #: (read from the state DB by a background thread, never on a request).
    gauges_refresh_s: float = Field(10.0, gt=0)


class Settings(BaseSettings):
    """All settings. Build with ``Settings()`` (reads env and bqx.toml) or ``Settings(home=...)``."""

    model_config = SettingsConfigDict(
        env_prefix="BQX_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Path(".bqx")
    #: ``duckdb:///path/bars.duckdb`` (default: under home) or ``postgresql://user@host/db``.
    store_url: str | None = None
    #: Transactional state (API keys, decision log, promotion history): SQLite (WAL) by default.
    state_url: str | None = None
    #: MLflow tracking/registry URI; default SQLite under home.
    tracking_uri: str | None = None
    #: Optuna storage URL; default SQLite under home.
    optuna_url: str | None = None
    bar_interval: str = "1min"
    #: Missing bars inside trading time are forward-filled up to this many bars; longer gaps
    #: are NaN and invalidate the windows that span them.
    max_ffill_bars: int = Field(5, ge=0)
    horizon: int = Field(60, ge=1, description="forecast horizon in bars")
    target: Literal["bqx", "return"] = "bqx"

    train: TrainSettings = Field(default_factory=TrainSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    online: OnlineSettings = Field(default_factory=OnlineSettings)
    regime: RegimeSettings = Field(default_factory=RegimeSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    forensics: ForensicsSettings = Field(default_factory=ForensicsSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("BQX_CONFIG", "bqx.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        elif "BQX_CONFIG" in os.environ:
            raise ConfigError(f"BQX_CONFIG points to {toml_path}, which does not exist")
        return tuple(sources)

    @field_validator("bar_interval")
    @classmethod
    def _check_interval(cls, v: str) -> str:
        try:
            td = parse_duration(v)
        except (ValueError, TypeError) as e:
            raise ValueError(f"bar_interval {v!r} is not a duration like '1min' or '1h'") from e
        if td <= timedelta(0) or td > timedelta(days=1):
            raise ValueError("bar_interval must be between 1 second and 1 day")
        return v

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not (v.startswith("duckdb://") or v.startswith(("postgresql://", "postgres://"))):
            raise ValueError(
                f"store_url {v!r} must start with duckdb:/// or postgresql:// "
                "(e.g. duckdb:///.bqx/bars.duckdb or postgresql://postgres@127.0.0.1:5432/test)"
            )
        return v

    # ---- derived values ---------------------------------------------------------------
    @cached_property
    def interval(self) -> timedelta:
        """Bar interval as a timedelta."""
        return parse_duration(self.bar_interval)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"duckdb:///{(self.home / 'bars.duckdb').as_posix()}"

    @property
    def resolved_state_url(self) -> str:
        return self.state_url or f"sqlite:///{(self.home / 'state.db').as_posix()}"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve().as_posix()}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def resolved_optuna_url(self) -> str:
        return self.optuna_url or f"sqlite:///{(self.home / 'optuna.db').as_posix()}"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    def public_dict(self) -> dict[str, Any]:
        """Settings as plain JSON-able data, with resolved URLs (for ``bqx config show``)."""
        d = self.model_dump(mode="json")
        hook = d.get("monitor", {}).get("webhook_url")
        if hook:  # a webhook's path is its credential (Slack, Teams)
            from urllib.parse import urlsplit

            u = urlsplit(hook)
            d["monitor"]["webhook_url"] = f"{u.scheme}://{u.hostname}/..."
        d["resolved"] = {
            "store_url": self.resolved_store_url,
            "state_url": self.resolved_state_url,
            "tracking_uri": self.resolved_tracking_uri,
            "optuna_url": self.resolved_optuna_url,
            "features_dir": str(self.features_dir),
            "interval_seconds": self.interval.total_seconds(),
        }
        from bqx.infra.redact import redact_tree

        return redact_tree(d)  # passwords never reach a terminal (issue 18.16)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's validation errors into a :class:`ConfigError`."""
    import tomllib

    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as e:
        where = os.environ.get("BQX_CONFIG", "bqx.toml")
        raise ConfigError(
            f"{where} is not valid TOML: {e}",
            hint="fix the file (https://toml.io), or point BQX_CONFIG elsewhere",
        ) from None
    except ValidationError as e:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(
            "invalid settings:\n  " + "\n  ".join(lines),
            hint="check BQX_* environment variables and bqx.toml",
        ) from None
