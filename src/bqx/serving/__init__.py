"""The prediction service and its building blocks (auth, rate limiting, metrics)."""
