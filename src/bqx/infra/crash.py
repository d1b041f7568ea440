"""Named crash points for fault tests: ``BQX_CRASH_AT=name`` kills the process there.

``crash_point("registry.approval.tags")`` is a no-op (one dict lookup) unless the
environment variable ``BQX_CRASH_AT`` equals its name, in which case the process sends
itself SIGKILL -- exactly what ``kill -9`` does, at a deterministic place (between two writes
that must be atomic together), so tests of crash consistency do not depend on timing.
"""

from __future__ import annotations

import os
import signal

ENV = "BQX_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process when ``BQX_CRASH_AT == name`` (fault tests only)."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
