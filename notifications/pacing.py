"""Pacing: at most ``rate`` sends per second, evenly spaced, never in bursts.

Providers throttle or block a client that sends faster than agreed; evenly
spaced sends stay under a per-second limit and under per-minute ones too.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Call :meth:`wait` before each send. ``rate`` 0 (or less) means unpaced."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        # From the later of the planned slot and now: an idle pause earns no burst.
        self._next = max(self._next, now) + self.interval
