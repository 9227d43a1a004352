"""Status files for ERPs that take no webhook: ``outbox/invoice-status-<UTC>.csv``.

Each lists the invoices whose status changed (PAID, CANCELLED) since the previous one,
at most one every ``status_file_seconds``, none when nothing changed. A file is recorded
with its changes before it is written (see :mod:`worker.state.status`), so each change
is in exactly one file across crashes: one recorded and not written is written again
under the same name, with the same rows, before any new one.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from pathlib import Path

from worker import log
from worker.pipeline.results import atomic_file, formula_safe_text
from worker.settings import Settings
from worker.state import Store, status
from worker.state.leases import lease_owner

#: How often the loop asks the database whether a file is due, at most.
CHECK_SECONDS = 1.0
#: Long enough to write a large file; a writer that dies lets go when its process does.
LEASE_SECONDS = 300.0


def name_at(now: float) -> str:
    return time.strftime("invoice-status-%Y%m%dT%H%M%SZ.csv", time.gmtime(now))


class StatusWriter:
    """Writes the status files that are due; ``step()`` is called from the service loop."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.owner = lease_owner()
        self._next_check = 0.0

    def step(self, now: bool = False) -> list[Path]:
        """Write what is due; ``now``: ask the database even if it was asked a moment ago
        (the end of ``run --once``). Returns the files written."""
        if not self.settings.status_files:
            return []
        if not now and time.monotonic() < self._next_check:
            return []
        self._next_check = time.monotonic() + min(CHECK_SECONDS, self.settings.status_file_seconds)
        if not status.due(self.store, self.clock(), self.settings.status_file_seconds):
            return []
        if not status.take(self.store, self.owner, LEASE_SECONDS):
            return []
        try:
            done = [self._write(f) for f in status.unwritten(self.store)]
            recorded = status.record(
                self.store, name_at, self.clock(), self.settings.status_file_seconds
            )
            if recorded is not None:
                done.append(self._write(recorded))
            return done
        except OSError as exc:
            # A full disk, an outbox not writable: what is recorded is written next time.
            log.event("status_file.stalled", logging.ERROR, error=str(exc))
            return []
        finally:
            status.release(self.store, self.owner)

    def _write(self, recorded: status.StatusFile) -> Path:
        target = self.settings.outbox / recorded.name
        with atomic_file(target) as fh:
            out = csv.writer(fh, lineterminator="\r\n")
            out.writerow(status.COLUMNS)
            for row in status.changes(self.store, recorded):
                out.writerow(_cell(value) for value in row)
        status.written(self.store, recorded)
        log.event("status_file.written", name=recorded.name, changes=recorded.changes)
        return target


def _cell(value: object) -> object:
    if value is None:
        return ""
    return formula_safe_text(value) if isinstance(value, str) else value
