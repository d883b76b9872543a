"""Injectable crash points for the fault tests: ``BV_FAULT_CRASH_AT=<point>[@<n>]``.

When the variable names a point, the process SIGKILLs itself the ``n``-th time (default 1)
it reaches that point: no ``finally``, no flush, exactly what a power cut or the OOM killer
does. Unset (production), ``reached`` is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "BV_FAULT_CRASH_AT"


class CrashPoints:
    def __init__(self, spec: str | None = None) -> None:
        raw = os.environ.get(ENV, "") if spec is None else spec
        point, _, count = raw.partition("@")
        self.point = point or None
        self.remaining = int(count) if count else 1

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
