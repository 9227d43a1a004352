"""SFTP push: every result file in ``outbox/`` is also uploaded to ``sftp_outbox``.

The worker writes results atomically (a hidden temp name, then a rename), so a
visible name in ``outbox/`` is always whole. Each is uploaded under a hidden temp
name and renamed over its final name, so the ERP never sees half a file either,
and recorded by name, size, time and sha256: a version is uploaded once (a crash
between the rename and the record uploads it once more, whole, over itself).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from worker import log
from worker.intake import names, sftp_remote
from worker.intake.claim import sha256_of
from worker.settings import Settings
from worker.state import Store
from worker.state import sftp as sftp_state

BLOCK = 1 << 20


@dataclass(frozen=True)
class _Local:
    name: str
    path: Path
    size: int
    mtime_ns: int


class Uploader:
    """Uploads new and changed result files to the remote outbox."""

    def __init__(self, settings: Settings, store: Store, folder: str) -> None:
        self.settings = settings
        self.store = store
        self.folder = folder
        self._folder_made = False

    def _results(self) -> list[_Local]:
        found = []
        try:
            entries = list(os.scandir(self.settings.outbox))
        except FileNotFoundError:
            return []
        for entry in entries:
            if not names.is_candidate_name(entry.name, False):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_file(follow_symlinks=False):
                found.append(_Local(entry.name, Path(entry.path), info.st_size, info.st_mtime_ns))
        return sorted(found, key=lambda f: f.mtime_ns)

    def waiting(self) -> list[_Local]:
        """Result files whose current version has not been uploaded."""
        done = sftp_state.uploads(self.store)
        todo = []
        for result in self._results():
            last = done.get(result.name)
            if last and (last.size, last.mtime_ns) == (result.size, result.mtime_ns):
                continue
            todo.append(result)
        return todo

    async def upload_new(self, sftp: asyncssh.SFTPClient) -> int:
        """Upload what is waiting; returns how many were uploaded."""
        todo = self.waiting()
        if todo and not self._folder_made:
            await sftp.makedirs(self.folder, exist_ok=True)
            self._folder_made = True
        uploaded = 0
        done = sftp_state.uploads(self.store)
        for result in todo:
            try:
                sha, _ = sha256_of(result.path)
            except FileNotFoundError:
                continue
            target = posixpath.join(self.folder, result.name)
            last = done.get(result.name)
            if not (last and last.sha256 == sha):
                try:
                    await self._put(sftp, result.path, target)
                except asyncssh.SFTPError as exc:
                    if isinstance(exc, sftp_remote.CONNECTION_GONE):
                        raise
                    # Not recorded: tried again at the next poll.
                    log.event(
                        "sftp.upload_failed", logging.WARNING, name=result.name, error=str(exc)
                    )
                    continue
                uploaded += 1
                log.event("sftp.uploaded", name=result.name, size=result.size, to=target)
            sftp_state.record_upload(
                self.store, result.name, result.size, result.mtime_ns, sha, target
            )
        return uploaded

    async def _put(self, sftp: asyncssh.SFTPClient, source: Path, target: str) -> None:
        tmp = posixpath.join(self.folder, f".{source.name[:200]}.tmp")
        async with sftp.open(tmp, "wb") as out:
            with open(source, "rb") as fh:
                while block := fh.read(BLOCK):
                    await out.write(block)
            # An fsync where the server offers it (OpenSSH's fsync@openssh.com): the rename
            # must not reach the disk before the bytes do.
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await out.fsync()
        await sftp_remote.replace(sftp, tmp, target)
