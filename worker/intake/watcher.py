"""The inbox watcher: watchdog events and periodic scans feed the completeness proof,
then a claim.

Events only say "look at this name now". A name becomes a claim once
:mod:`worker.intake.complete` proves the file complete: at once when no process
holds it open for writing, after ``settle_seconds`` of holding still on a mount
(or, in done-marker mode, once ``<name>.done`` exists). A full scan runs at start
and every ``scan_seconds``, because watchdog drops events on overflow and sees
nothing that arrived while it was down; the same loop reconciles SQLite:
unfinished files no live run holds are enqueued again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from worker import log
from worker.intake import claim, complete, names
from worker.settings import Settings
from worker.state import Store, files
from worker.state.mounts import is_network_filesystem

TICK = 0.05
#: Events wake the loop at once, but a writer's stream of them wakes it at most this often.
MIN_TICK = 0.005
#: watchdog's inotify emitter holds every event queued behind an unpaired "moved from"
#: for this long, waiting for its "moved to" (``InotifyMoveEventGrouper.delay``). Each
#: claim is such a move out of the watched folder, so for this long after a claim the
#: inbox is also listed on every tick: a file dropped meanwhile is not seen 0.5 s late.
EVENT_HOLD_SECONDS = 0.5
#: Claimed files are enqueued this many at a time: workers start on a burst while the
#: rest of it is still being claimed (about a millisecond a file).
ENQUEUE_EVERY = 64


class _Events(FileSystemEventHandler):
    def __init__(self, notice: Callable[[str], None]) -> None:
        self.notice = notice

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        path = getattr(event, "dest_path", "") or event.src_path
        self.notice(os.fsdecode(path))


def make_observer(settings: Settings) -> BaseObserver:
    """Native events, or polling on network and FUSE mounts where events do not arrive."""
    polling = settings.observer == "polling" or (
        settings.observer == "auto" and is_network_filesystem(settings.inbox)
    )
    if polling:
        return PollingObserver(timeout=max(settings.settle_seconds / 2, 0.25))
    return Observer()


class Watcher:
    """Claims complete files from the inbox and hands their ids to ``enqueue``."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        enqueue: Callable[[list[int]], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.enqueue = enqueue
        self._seen: dict[str, complete.Watch] = {}
        self.proof = complete.Proof.for_folder(settings.inbox, settings.settle_seconds)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._observer: BaseObserver | None = None
        self._last_scan = 0.0
        self._list_until = 0.0

    # -- what is waiting -----------------------------------------------------

    def notice(self, path: str) -> None:
        """A watchdog event named ``path``: check it on the next tick."""
        p = Path(path)
        if p.parent != self.settings.inbox and not self.settings.recursive:
            return
        if any(part.startswith(".") for part in p.relative_to(self.settings.inbox).parts[:-1]):
            return
        name = p.name
        if self.settings.done_marker and name.endswith(names.DONE_SUFFIX):
            path = str(p.with_name(name[: -len(names.DONE_SUFFIX)]))
            name = Path(path).name
        if names.is_candidate_name(name, self.settings.done_marker):
            with self._lock:
                if path in self._seen:
                    self._wake.set()
                    return
            # Its size and time now start the settle clock, where one is needed.
            watch = self.proof.watch(path, time.monotonic())
            if watch is not None:
                with self._lock:
                    self._seen.setdefault(path, watch)
                self._wake.set()

    def scan(self) -> None:
        """Every candidate name in the inbox, as if an event had named it."""
        top = self.settings.inbox
        for folder, dirs, entries in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")] if self.settings.recursive else []
            for name in entries:
                self.notice(os.path.join(folder, name))

    def pending(self) -> int:
        with self._lock:
            return len(self._seen)

    # -- the completeness check ---------------------------------------------------

    def _ready(self, path: str, now: float) -> bool | None:
        """True to claim, False to wait, None to forget (gone, or a marker still missing)."""
        if os.path.isdir(path):
            return None
        marker = self.settings.done_marker
        if marker and not os.path.exists(path + names.DONE_SUFFIX):
            return None
        verdict = self.proof.look(path, self._seen[path], now, marker=marker)
        if verdict is complete.Verdict.GONE:
            return None
        return verdict is complete.Verdict.READY

    def tick(self) -> list[int]:
        """Claim what has settled; returns the new file ids (already enqueued)."""
        now = time.monotonic()
        with self._lock:
            ready, gone = [], []
            for path in list(self._seen):
                verdict = self._ready(path, now)
                if verdict is None:
                    gone.append(path)
                elif verdict:
                    ready.append(path)
            for path in gone + ready:
                self._seen.pop(path, None)
        claimed: list[int] = []
        unsent: list[int] = []
        for path in ready:
            try:
                file_id = claim.claim(self.settings, self.store, Path(path))
            except OSError as exc:
                log.event("file.claim_failed", path=Path(path).name, error=str(exc))
                continue
            if file_id is not None:
                claimed.append(file_id)
                unsent.append(file_id)
            if len(unsent) >= ENQUEUE_EVERY:
                self.enqueue(unsent)
                unsent = []
        if unsent:
            self.enqueue(unsent)
        if claimed:
            self._list_until = time.monotonic() + EVENT_HOLD_SECONDS
        return claimed

    def reconcile(self, *, at_start: bool = False) -> None:
        """Scan the inbox, register orphaned claims, enqueue unfinished files again.

        At start every unfinished file is enqueued (a run that held it may have died
        a moment ago); later only those no live run holds and none enqueued lately.
        """
        self.scan()
        orphans = claim.orphans(self.settings, self.store)
        stale = files.to_resume(
            self.store,
            older_than=0 if at_start else self.settings.lease_seconds,
            leased_too=at_start,
        )
        todo = sorted(set(orphans) | set(stale))
        if todo:
            log.event("reconcile.enqueue", files=len(todo))
            self.enqueue(todo)

    # -- running -----------------------------------------------------------------

    def start(self) -> None:
        self.settings.inbox.mkdir(parents=True, exist_ok=True)
        self._observer = make_observer(self.settings)
        self._observer.schedule(
            _Events(self.notice), str(self.settings.inbox), recursive=self.settings.recursive
        )
        self._observer.start()
        log.event(
            "watcher.started",
            inbox=self.settings.inbox,
            observer=type(self._observer).__name__,
            proof=(
                "done marker"
                if self.settings.done_marker
                else "unchanged for settle_seconds, read fresh (a mount)"
                if self.proof.mount
                else "no writer holds it open"
            ),
            settle_seconds=self.settings.settle_seconds,
        )
        self.reconcile(at_start=True)
        self._last_scan = time.monotonic()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self.step()
            self.idle()

    def idle(self, timeout: float = TICK) -> None:
        """Wait until an event names a file, or ``timeout``, before the next step."""
        self._stop.wait(MIN_TICK)
        self._wake.wait(timeout)

    def step(self) -> bool:
        """One tick; True when it also reconciled."""
        # Cleared before the tick: an event during it makes the next idle() return at once.
        self._wake.clear()
        if time.monotonic() < self._list_until:
            self.scan()
        self.tick()
        if time.monotonic() - self._last_scan >= self.settings.scan_seconds:
            self.reconcile()
            self._last_scan = time.monotonic()
            return True
        return False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
