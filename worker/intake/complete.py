"""What proves a file in the inbox complete (SPEC 11), for the watcher and for the job.

- **A writer on this host.** A read lease (``fcntl(F_SETLEASE, F_RDLCK)``) is granted
  only while no process on this host holds the file open for writing: the kernel
  answers for every process, of any user, in any container. It is taken and let go at
  once. A file nobody holds open is complete, however it arrived (renamed in, or
  written in place and closed); one held open waits, however long its writer pauses.
  inotify's close event is only a hint that a check is due (another writer may still
  hold the file), and ``/proc/*/fd`` shows only the processes we may inspect.
- **Where the lease says nothing** (the worker is not the file's owner and lacks
  ``CAP_LEASE``, or the filesystem has no leases), size and modification time must
  hold still for ``settle_seconds``.
- **On a network or FUSE mount** a lease sees only this host's writers, so size and
  modification time must also hold still for ``settle_seconds``, read fresh: opening
  the file makes sshfs and NFS ask the server, and ``statx(AT_STATX_FORCE_SYNC)`` makes
  the kernel skip its own attribute cache. A plain ``stat`` there can show a size that
  holds still for 20 s while the file on the server grows.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import signal
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from worker import log
from worker.state.mounts import is_network_filesystem

#: How often a job waiting for a claimed file to hold still looks again.
WAIT_TICK = 0.1
#: How often the log says again that a file is still waiting for its writer.
WAITING_LOG_EVERY = 60.0
#: Checks of one file on a mount go to the server: at most this often.
MOUNT_CHECK_EVERY = 0.25

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_BASIC_STATS = 0x7FF


class Writer(StrEnum):
    """What this host's kernel says about writers holding a file open."""

    NONE = "none"
    OPEN = "open"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A file's size and modification time, and whether it is a regular file."""

    size: int
    mtime_ns: int
    regular: bool = True


def writers(path: str | Path) -> Writer:
    """Whether a process on this host holds ``path`` open for writing."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return Writer.UNKNOWN
    try:
        # A writer opening the file in the microseconds we hold the lease makes the kernel
        # signal us: SIGIO would end the process, SIGURG is ignored unless handled.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return Writer.OPEN
        _lease_refused(exc)
        return Writer.UNKNOWN
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return Writer.NONE
    finally:
        os.close(fd)


@functools.cache
def _lease_refused_once(code: int) -> None:
    log.event(
        "intake.writer_check_unavailable",
        reason=errno.errorcode.get(code, str(code)),
        fallback="size and modification time holding still for settle_seconds",
    )


def _lease_refused(exc: OSError) -> None:
    _lease_refused_once(exc.errno or 0)


def snapshot(path: str | Path, fresh: bool = False) -> Snapshot | None:
    """``path``'s size and mtime, or None if it is gone; ``fresh`` past every cache."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return Snapshot(info.st_size, info.st_mtime_ns, regular=False)
    if not fresh:
        return Snapshot(info.st_size, info.st_mtime_ns)
    try:
        # The open is what makes sshfs refresh its own cache (and NFS revalidate).
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError:
        fd = -1
    try:
        forced = _statx_forced(path)
        if forced is not None:
            return forced
        info = os.fstat(fd) if fd >= 0 else os.lstat(path)
        return Snapshot(info.st_size, info.st_mtime_ns)
    except FileNotFoundError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


@functools.cache
def _statx() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[..., int] = libc.statx
    except (OSError, AttributeError):
        return None
    return function


def _statx_forced(path: str | Path) -> Snapshot | None:
    """statx with AT_STATX_FORCE_SYNC, or None where the C library has no statx."""
    function = _statx()
    if function is None:
        return None
    buffer = ctypes.create_string_buffer(256)
    flags = _AT_SYMLINK_NOFOLLOW | _AT_STATX_FORCE_SYNC
    if function(_AT_FDCWD, os.fsencode(path), flags, _STATX_BASIC_STATS, buffer) != 0:
        code = ctypes.get_errno()
        if code == errno.ENOENT:
            raise FileNotFoundError(code, os.strerror(code), str(path))
        return None
    # struct statx: stx_size is the u64 at byte 40, stx_mtime the {s64, u32} at 112.
    (size,) = struct.unpack_from("=Q", buffer, 40)
    seconds, nanos = struct.unpack_from("=qI", buffer, 112)
    return Snapshot(size, seconds * 1_000_000_000 + nanos)


@functools.lru_cache(maxsize=64)
def on_mount(folder: Path) -> bool:
    """Whether ``folder`` is on a network or FUSE mount (mounts rarely move; cached)."""
    return is_network_filesystem(folder)


class Verdict(StrEnum):
    """What a look at a waiting file decided."""

    READY = "ready"
    WAIT = "wait"
    GONE = "gone"


@dataclass(slots=True)
class Watch:
    """One file waiting to be proved complete."""

    snapshot: Snapshot
    #: Since when (monotonic) its snapshot has held still.
    since: float
    #: When (monotonic) it was first seen.
    seen: float
    next_look: float = 0.0
    #: When (monotonic) the log last said it waits for its writer; 0 for never.
    told: float = 0.0


class Proof:
    """The completeness test for the files of one folder."""

    def __init__(self, settle_seconds: float, mount: bool) -> None:
        self.settle_seconds = settle_seconds
        self.mount = mount

    @classmethod
    def for_folder(cls, folder: Path, settle_seconds: float) -> Proof:
        return cls(settle_seconds, on_mount(folder))

    def watch(self, path: str | Path, now: float) -> Watch | None:
        """Start watching ``path``; None if it is gone already."""
        snap = snapshot(path, fresh=self.mount)
        return None if snap is None else Watch(snap, now, now)

    def look(self, path: str | Path, watch: Watch, now: float, marker: bool = False) -> Verdict:
        """Judge ``path`` now. ``marker``: a done marker proves it, once no writer holds it."""
        if now < watch.next_look:
            return Verdict.WAIT
        if self.mount:
            watch.next_look = now + MOUNT_CHECK_EVERY
        snap = snapshot(path, fresh=self.mount)
        if snap is None:
            return Verdict.GONE
        if snap != watch.snapshot:
            watch.snapshot, watch.since = snap, now
        if not snap.regular:
            # Never opened: it is rejected as it is, once it holds still.
            return self._settled(watch, now)
        holder = writers(path)
        if holder is Writer.OPEN:
            watch.since = now
            self._tell_waiting(path, watch, now)
            return Verdict.WAIT
        if marker:
            return Verdict.READY
        # A file of no bytes yet may be a placeholder that its writer opens again to fill.
        if holder is Writer.NONE and not self.mount and snap.size:
            return Verdict.READY
        return self._settled(watch, now)

    def _settled(self, watch: Watch, now: float) -> Verdict:
        return Verdict.READY if now - watch.since >= self.settle_seconds else Verdict.WAIT

    def _tell_waiting(self, path: str | Path, watch: Watch, now: float) -> None:
        if watch.told and now - watch.told < WAITING_LOG_EVERY:
            return
        watch.told = now
        log.event(
            "file.waiting_for_writer",
            name=Path(path).name,
            size=watch.snapshot.size,
            waited_seconds=round(now - watch.seen),
            note="held open for writing by a process on this host; claimed once closed",
        )

    def wait(self, path: str | Path, renew: Callable[[], None]) -> Snapshot | None:
        """Block until ``path`` is complete (None if it went); ``renew`` is called meanwhile."""
        now = time.monotonic()
        watch = self.watch(path, now)
        while watch is not None:
            verdict = self.look(path, watch, now)
            if verdict is Verdict.GONE:
                return None
            if verdict is Verdict.READY:
                return watch.snapshot
            time.sleep(WAIT_TICK)
            renew()
            now = time.monotonic()
        return None
