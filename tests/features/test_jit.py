"""The compiled-kernel mechanism of the online feature path (bqx.features._jit)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bqx.features import _jit


@_jit.kernel
def _inner(x: np.ndarray, a: float) -> float:
    s = 0.0
    for v in x:
        s = a * v + (1.0 - a) * s
    return s


@_jit.kernel
def _outer(x: np.ndarray, a: float) -> float:
    return _inner(x, a) / (x[0] - x[0])  # a division by zero: inf or NaN, never an error


def test_compiled_equals_python_and_calls_other_kernels():
    x = np.random.default_rng(0).standard_normal(300)
    assert _inner(x, 0.1) == _inner.py_func(x, 0.1)  # no fastmath: the same arithmetic
    y = _outer(x, 0.1)
    assert math.isinf(y)
    assert _outer.dispatcher is not None  # really compiled (BQX_JIT is not set in tests)
    assert _outer in _jit.kernels()


def test_every_feature_kernel_equals_its_python_function():
    """Each kernel of the feature families, compiled and as plain Python, on random
    windows with NaNs: the same values (bit for bit; an ulp for transcendental ones).

    Cases live in ``tests/features/jit_cases_*.py``: ``CASES = {qualname: (kernel,
    make_args(rng) -> args tuple, exact)}``; every kernel must have one."""
    import importlib
    import pkgutil

    import bqx.features  # imports every family
    import tests.features as here

    cases: dict[str, tuple[object, object, bool]] = {}
    for m in pkgutil.iter_modules(here.__path__):
        if m.name.startswith("jit_cases_"):
            more = importlib.import_module(f"tests.features.{m.name}").CASES
            clash = set(more) & set(cases)
            assert not clash, f"kernel cases named twice ({m.name}): {sorted(clash)}"
            cases.update(more)
    import bqx.training.fastpredict  # noqa: F401 - the forest kernel

    names = [
        k.__qualname__ for k in _jit.kernels() if not k.py_func.__module__.startswith("tests.")
    ]
    twice = {n for n in names if names.count(n) > 1}
    assert not twice, f"kernels share a name (their cases would collide): {sorted(twice)}"
    for k in _jit.kernels():
        if k.py_func.__module__.startswith("tests."):
            continue
        assert k.__qualname__ in cases, f"no test case for kernel {k.__qualname__}"
    for name, (k, make_args, exact) in cases.items():
        for seed in range(3):
            args = make_args(np.random.default_rng(seed))
            a, b = k(*args), k.py_func(*args)
            if exact:
                np.testing.assert_array_equal(a, b, err_msg=name)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=0, err_msg=name)


@pytest.mark.skipif(sys.platform != "linux", reason="fresh interpreter timing")
def test_jit_off_runs_plain_python(tmp_path):
    code = textwrap.dedent(
        """
        import numpy as np
        from bqx.features import _jit
        @_jit.kernel
        def f(x):
            return x.sum()
        print(f(np.ones(3)), f.dispatcher is None, _jit.enabled())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"BQX_JIT": "0", "PATH": "/usr/bin", "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["3.0", "True", "False"]


def test_a_kernel_without_a_writable_cache_still_compiles(monkeypatch):
    """numba raises when no cache location is writable (a read-only home and package):
    the kernel then compiles in memory, per process, instead of failing the feature path."""
    import numba

    real = numba.njit
    seen: list[bool] = []

    def njit(*a, **k):
        seen.append(k.get("cache", False))
        if k.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*a, **k)

    monkeypatch.setattr(numba, "njit", njit)

    def f(x: np.ndarray) -> float:
        return x.sum() * 2.0

    k = _jit.Kernel(f)
    assert k(np.ones(4)) == 8.0 and k.dispatcher is not None
    assert seen == [True, False]
