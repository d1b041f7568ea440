"""Lazily opened connections shared by the long-lived objects that need them.

The prediction service, the operator and the rollout manager each take an optional state
DB, registry and bar store (tests inject them) and otherwise open them from their settings
on first use - so that importing or constructing them never touches a server, and a process
that never needs the store never opens it. One mixin instead of three copies of the same
three properties.
"""

from __future__ import annotations

from typing import Any


class LazyDeps:
    """``state``, ``registry`` and ``store`` opened from ``self.settings`` on first use.

    Subclasses set ``settings`` and the ``_state``/``_registry``/``_store`` slots (None or an
    injected object), and may override :meth:`_state_options`.
    """

    settings: Any
    _state: Any
    _registry: Any
    _store: Any

    def _state_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`bqx.state.open_state` (none by default)."""
        return {}

    @property
    def state(self) -> Any:
        if self._state is None:
            from bqx.state import open_state

            self._state = open_state(self.settings, **self._state_options())
        return self._state

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from bqx.registry import Registry

            self._registry = Registry(self.settings)
        return self._registry

    @property
    def store(self) -> Any:
        if self._store is None:
            from bqx.data.store import open_store

            self._store = open_store(settings=self.settings)
        return self._store
