"""Claiming dropped files and moving them to their final folder, crash-safely.

A claim is one atomic rename out of the top level of ``inbox/`` into
``inbox/.claimed/<token>/<name>`` (same filesystem, so atomic even on a mount),
then a row in SQLite. A crash between the two leaves a claimed file with no
row; :func:`orphans` finds it at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from worker import log
from worker.errors import StateError
from worker.intake import complete
from worker.intake.names import DONE_SUFFIX, safe_stem
from worker.settings import Settings
from worker.state import Store, files, retries
from worker.state.leases import lease_owner


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def register(store: Store, claimed: Path, mount: bool = False) -> int:
    """Record a claimed file (its hash for duplicate detection, and its size and time
    as they were before it was read, to tell whether it changed since) and return its id.
    ``mount``: the claim folder is on a network or FUSE mount."""
    snap = complete.snapshot(claimed, fresh=mount)
    if snap is None:
        raise FileNotFoundError(errno.ENOENT, "claimed file disappeared", str(claimed))
    if snap.regular:
        sha, size = sha256_of(claimed)
    else:
        # A symlink or FIFO is never opened: it is rejected as it is.
        sha, size = "", 0
    return files.add(store, claimed.name, str(claimed), sha, size, snap.mtime_ns)


def claim(settings: Settings, store: Store, path: Path) -> int | None:
    """Take ``path`` out of the inbox and record it; None if it is gone or not ours."""
    token = secrets.token_hex(8)
    folder = settings.claimed / token
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    try:
        os.rename(path, target)
    except FileNotFoundError:
        folder.rmdir()
        return None
    if settings.done_marker:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + DONE_SUFFIX).unlink()
    return register(store, target, complete.on_mount(settings.claimed))


def orphans(settings: Settings, store: Store) -> list[int]:
    """Register claimed files that have no row (a crash between rename and insert)."""
    known = files.claimed_paths(store)
    found: list[int] = []
    if not settings.claimed.exists():
        return found
    for folder in settings.claimed.iterdir():
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except FileNotFoundError:
            # Its file finished and moved on since the listing: nothing is orphaned there.
            continue
        for entry in entries:
            if str(entry) not in known:
                try:
                    file_id = register(store, entry, complete.on_mount(settings.claimed))
                except FileNotFoundError:
                    continue
                log.event("file.orphan_claimed", path=entry.name)
                found.append(file_id)
        if not entries and folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()
    return found


def final_name(folder: Path, name: str, file_id: int, taken: Callable[[Path], bool]) -> Path:
    """``folder/name``, or ``folder/<stem>.<id><ext>`` when an earlier file has that name
    (there, or in ``taken``: given to another file that may not have moved yet)."""
    first = folder / safe_stem(name)
    if not first.exists() and not first.is_symlink() and not taken(first):
        return first
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    tail = f".{file_id}" + (f".{ext[:40]}" if ext else "")
    return folder / (safe_stem(stem, len(tail.encode())) + tail)


def move(source: Path, target: Path) -> None:
    """Rename, or copy-then-rename across filesystems; never leaves a half file at target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = target.with_name(f".{target.name[:240]}.tmp")
        shutil.copy2(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)
        source.unlink()
    with contextlib.suppress(OSError):
        source.parent.rmdir()


# -- trying a rejected file again ---------------------------------------------------


def retry(settings: Settings, store: Store, file_id: int) -> retries.Retry:
    """Take a file rejected as a whole again: recorded (its state, and the move of its
    original back to a claim folder, in one transaction, this process holding its lease),
    then moved, then let go for the reconciler to enqueue. A crash in between leaves the
    move recorded: the file's next run does it. StateError when it may not be retried."""
    file = retries.check(store, file_id)
    if not _exists(Path(str(file.final_path))):
        raise StateError(f"file {file_id}: its original {file.final_path} is gone")
    target = settings.claimed / secrets.token_hex(8) / safe_stem(file.name)
    owner = lease_owner()
    asked = retries.request(store, file_id, str(target), owner, settings.lease_seconds)
    log.event("file.retry", file_id=file_id, name=file.name)
    finish_retry(settings, store, asked, owner)
    return asked


def finish_retry(
    settings: Settings, store: Store, asked: retries.Retry, owner: str | None = None
) -> None:
    """Move a retried original back to its claim folder, if not done yet; safe to repeat."""
    source, target = Path(asked.source), Path(asked.target)
    if _exists(target):
        if _exists(source):
            # A copy across filesystems was renamed into place, its source not yet removed.
            source.unlink()
    elif _exists(source):
        _move_back(settings, asked, source, target)
    # Neither: the original was removed meanwhile; its run rejects it as UNREADABLE_FILE.
    retries.moved(store, asked, owner)


def _move_back(settings: Settings, asked: retries.Retry, source: Path, target: Path) -> None:
    for _ in range(3):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
            return
        except FileNotFoundError:
            if not _exists(source):
                return
            # The orphan scan removed the empty claim folder before the rename: again.
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # rejected/ is on another filesystem. The copy is made outside .claimed/ (a hidden
        # name the watcher skips), so the orphan scan never registers half a file.
        tmp = settings.inbox / f".retry-{asked.id}.tmp"
        shutil.copy2(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)
        source.unlink()
        return


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()
