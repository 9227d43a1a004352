"""SIGINT and SIGTERM: a clean stop at any moment of a process's life, its start included.

A worker process starts with both blocked (``processes.start``; the signal mask
survives spawn's exec). :class:`Stopper` unblocks them once its handler is in
place, so a signal sent while the process was still importing or connecting waits
for the handler instead of killing it silently: the process still stops cleanly
and says so.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from worker import log

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """The stop signals blocked in this thread, and in the processes it spawns meanwhile."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class Stopper:
    """Turns SIGINT and SIGTERM into an event the main loop waits on, then unblocks them:
    one sent while this process was starting is taken here rather than killing it."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __enter__(self) -> Stopper:
        self._old = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.event("worker.stopping", signal=signal.Signals(signum).name)
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
