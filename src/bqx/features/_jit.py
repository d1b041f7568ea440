"""Compiled kernels for the online feature path (numba), compiled lazily and cached.

Why compiled code here: an uncached prediction evaluates a model's ~70 features at a
handful of rows (t, its lags). In numpy each value is a chain of small-array calls whose
per-call overhead (~1 us each, hundreds per prediction) is most of the cost; the arithmetic
itself is a few thousand flops. A loop compiled by numba does the same arithmetic without
the per-call overhead.

Rules every kernel follows (tested in ``tests/features/test_jit.py``):

* IEEE arithmetic as written: no ``fastmath`` (LLVM may then neither reorder sums nor
  contract multiply-adds), so a kernel is deterministic and its compiled result equals its
  pure-Python ``py_func`` bit for bit for ``+ - * /`` and comparisons (transcendental
  functions may differ from numpy's by an ulp; those kernels are compared with a
  tolerance);
* ``error_model="numpy"``: ``x / 0.0`` gives inf/NaN as in numpy, never an exception;
* ``nogil``: a kernel releases the GIL while it runs;
* lazy: ``numba`` is imported and a kernel compiled on its first call (``bqx --help`` and
  the registry commands never pay for it); compiled code is cached on disk next to the
  source tree's hash (``cache=True`` under ``~/.cache/bqx/numba-<hash>``, or
  ``$NUMBA_CACHE_DIR`` when set), so later processes load it in milliseconds and an edited
  kernel - or an edited kernel it calls, which numba's own cache would not notice - is
  never served from a stale cache;
* a kernel may call other kernels (module globals decorated with :func:`kernel`): they are
  compiled first and bound into it.

Set ``BQX_JIT=0`` to run every kernel as plain Python (debugging; slow).

The online path of a family stays the *definition* of its online values: the full
``at()`` and the subset ``at_array(only=...)`` call the same kernels, so they agree bit
for bit, and the parity tests check them against the batch build (to rounding).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

_ENABLED = os.environ.get("BQX_JIT", "1").strip().lower() not in ("0", "false", "no", "off")
_LOCK = threading.Lock()
_KERNELS: list[Kernel] = []


class Kernel:
    """A function compiled by numba on its first call (see the module docstring).

    ``py_func`` is the plain-Python function; calling the kernel runs the compiled one."""

    __slots__ = ("__dict__", "__name__", "__qualname__", "__wrapped__", "_compiled", "py_func")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.py_func = fn
        self._compiled: Callable[..., Any] | None = None
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any) -> Any:
        f = self._compiled
        if f is None:
            f = self._compile()
        return f(*args)

    def _compile(self) -> Callable[..., Any]:
        with _LOCK:
            return self._compile_locked()

    def _compile_locked(self) -> Callable[..., Any]:
        if self._compiled is not None:
            return self._compiled
        if not _ENABLED:
            self._compiled = self.py_func
            return self._compiled
        fn = self.py_func
        g = fn.__globals__
        inner = {n: g[n] for n in fn.__code__.co_names if isinstance(g.get(n), Kernel)}
        if inner:
            # numba types a global callee only if it is a dispatcher: bind the compiled
            # callees into a copy of the globals (kernels are module-level constants)
            g = dict(g)
            for n, k in inner.items():
                g[n] = k._compile_locked()
            fn = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
            fn.__qualname__ = self.py_func.__qualname__
            fn.__module__ = self.py_func.__module__
        import numba
        from numba.core import config as _config

        config: Any = _config

        # numba picks the cache locator when the dispatcher is made: point it at our
        # directory for this one decoration only (other numba users keep theirs)
        saved = config.CACHE_DIR
        config.CACHE_DIR = saved or _cache_dir()
        opts: dict[str, Any] = {"nogil": True, "error_model": "numpy", "fastmath": False}
        try:
            self._compiled = numba.njit(cache=True, **opts)(fn)
        except RuntimeError as e:  # no writable cache anywhere: compile in memory only
            log.warning("numba cannot cache %s (%s): compiled per process", self.__qualname__, e)
            self._compiled = numba.njit(cache=False, **opts)(fn)
        finally:
            config.CACHE_DIR = saved
        return self._compiled

    @property
    def dispatcher(self) -> Any:
        """The numba dispatcher (``None`` before the first call or with ``BQX_JIT=0``)."""
        return self._compiled if self._compiled is not self.py_func else None


_CACHE_DIR: str | None = None


def _cache_dir() -> str:
    """A directory named after the hash of this package's sources (a user's
    ``NUMBA_CACHE_DIR`` wins over it)."""
    global _CACHE_DIR
    if _CACHE_DIR is not None:
        return _CACHE_DIR
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    _CACHE_DIR = str(base / "bqx" / f"numba-{h.hexdigest()[:16]}")
    return _CACHE_DIR


def warm_marker() -> Path:
    """A file whose presence says a warm-up of the online kernels finished for this source
    tree at this path (numba's cache entries are per source path): in the cache directory
    (``$NUMBA_CACHE_DIR`` when set)."""
    here = str(Path(__file__).resolve().parent)
    tag = hashlib.sha256(here.encode()).hexdigest()[:16]
    base = os.environ.get("NUMBA_CACHE_DIR") or _cache_dir()
    return Path(base) / f"warm-{tag}"


def kernel(fn: _F) -> _F:
    """Decorate a numba-compatible function: compiled lazily, cached, GIL released."""
    k = Kernel(fn)
    _KERNELS.append(k)
    return k  # type: ignore[return-value]


def kernels() -> tuple[Kernel, ...]:
    """Every kernel declared so far (imported modules only)."""
    return tuple(_KERNELS)


def enabled() -> bool:
    return _ENABLED
