"""BQX ML: minute bars of the 28 major FX pairs -> causal features -> per-pair models -> served signals.

The package is layered; data flows one way::

    data (store, ingestion, simulator) -> features -> training -> registry -> serving / backtest

Lower layers never import higher ones. Heavy dependencies (MLflow, LightGBM, Ray) are imported
lazily inside the functions that need them so that ``import bqx`` and the CLI start fast.
"""

__version__ = "0.1.0"
