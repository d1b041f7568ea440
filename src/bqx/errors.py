"""Typed errors. Each carries a message that says what the user must fix."""

from __future__ import annotations


class BqxError(Exception):
    """Base class for every error BQX raises on purpose.

    ``hint`` is an optional short instruction shown by the CLI and API after the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(BqxError):
    """Settings are invalid (bad URL, unparseable interval, unreadable bqx.toml)."""


class UnknownPairError(BqxError, ValueError):
    """A currency pair that is not one of the 28 majors."""


class StoreError(BqxError):
    """The bar store cannot be reached or is in an unexpected state."""


class DataValidationError(BqxError):
    """Input data failed validation. ``report`` is a DataFrame of (row, pair, ts, reason)."""

    def __init__(self, message: str, report: object = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class NoDataError(BqxError):
    """No bars (or features) exist for the requested pair/time range."""


class StaleDataError(BqxError):
    """The newest bar available is older than the configured tolerance."""


class ModelNotFoundError(BqxError):
    """No registered model (or no model with the requested alias/version)."""


class RegistryError(BqxError):
    """A registry operation is not allowed (e.g. promoting a rejected version)."""


class InsufficientDataError(BqxError):
    """Too few of the version's selected features are finite to forecast (``strict`` calls).

    ``missing`` lists the selected features that are NaN (e.g. after a feed gap)."""

    def __init__(self, message: str, missing: list[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.missing = missing


class RegistryUnavailableError(BqxError):
    """The model registry (MLflow) could not be reached or failed: not "model missing"."""
