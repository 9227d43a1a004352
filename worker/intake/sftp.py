"""SFTP pull: a remote folder polled as an inbox, with no mount.

Every ``sftp_poll_seconds`` the folder is listed. A file is complete once its size
and modification time, as the server reports them, are the same at two listings
at least ``settle_seconds`` apart. It is then downloaded into ``inbox/.sftp/``
(hidden, so the watcher never looks there; on the inbox's filesystem, so the
claim is a rename), fsynced, recorded, claimed like any dropped file, and only
then removed from the server or moved to ``sftp_archive``.

Each step is recorded before the next (:mod:`worker.state.sftp`), so a crash at
any point costs nothing: a remote file that matches a recorded fetch is never
downloaded again, only finished (claimed if it was not, then removed), and a
partial download left behind is deleted at start. A server that is down, refuses
or drops the connection is retried with a doubling wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from worker import log
from worker.intake import claim, names, sftp_remote
from worker.intake.sftp_remote import Entry
from worker.intake.sftp_upload import Uploader
from worker.settings import Settings
from worker.state import Store, leases, queue
from worker.state import sftp as sftp_state
from worker.state.sftp import Fetch, FetchState

#: The longest wait between tries while the server is unreachable.
BACKOFF_CAP = 300.0
#: Part of a download in progress, inside its own folder of ``inbox/.sftp/``.
PARTIAL = ".download"


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime: int
    since: float


class SftpPoller:
    """Fetches complete files from ``sftp_url`` and hands their ids to ``enqueue``."""

    def __init__(
        self, settings: Settings, store: Store, enqueue: Callable[[list[int]], None]
    ) -> None:
        if not settings.sftp_url:
            raise ValueError("SftpPoller needs sftp_url")
        # asyncssh logs each connection step at INFO: our own events say what matters.
        self.settings = settings
        self.store = store
        self.enqueue = enqueue
        self.remote = sftp_remote.parse_url(settings.sftp_url)
        self.downloads = settings.inbox / ".sftp"
        self.uploader = (
            Uploader(settings, store, settings.sftp_outbox) if settings.sftp_outbox else None
        )
        self.failures = 0
        #: Ids of the files fetched so far (``run --once`` waits for them).
        self.fetched: list[int] = []
        self._owner = leases.lease_owner()
        self._seen: dict[str, _Seen] = {}
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()

    # -- running -----------------------------------------------------------------

    def start(self) -> None:
        """Clean up after an earlier run, then poll in a thread of its own."""
        self._prepare()
        self._thread = threading.Thread(target=self._run, name="sftp-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at once: every step is crash-safe, so a cancelled one is finished later."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
        sftp_state.release_role(self.store, self._owner)

    def fetch_once(self) -> list[int]:
        """``run --once``: list, wait out the settle time, fetch what held still."""
        self._prepare()
        asyncio.run(self._briefly(self._poll_settled))
        return self.fetched

    def upload_once(self) -> None:
        """``run --once``, at the end: upload the results written meanwhile."""
        if self.uploader is not None:
            asyncio.run(self._briefly(self._upload))

    def _prepare(self) -> None:
        self.downloads.mkdir(parents=True, exist_ok=True)
        self._clean_partials()
        log.event(
            "sftp.started",
            url=self.remote.shown,
            poll_seconds=self.settings.sftp_poll_seconds,
            archive=self.settings.sftp_archive,
            outbox=self.settings.sftp_outbox,
        )

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            while not self._stopping.is_set():
                await asyncio.sleep(await self._guarded())
        except asyncio.CancelledError:
            pass
        finally:
            await self._disconnect()

    async def _briefly(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await self._guarded(step)
        finally:
            await self._disconnect()
            sftp_state.release_role(self.store, self._owner)

    async def _poll_settled(self) -> None:
        await self.poll()
        await asyncio.sleep(self.settings.settle_seconds)
        await self.poll()

    async def _upload(self) -> None:
        if self.uploader is not None:
            await self.uploader.upload_new(await self._client())

    async def _guarded(self, step: Callable[[], Awaitable[None]] | None = None) -> float:
        """One poll (or ``step``); the seconds to wait before the next (longer after each
        failure)."""
        try:
            await (step or self.poll)()
        except Exception as exc:
            await self._disconnect()
            self.failures += 1
            delay = queue.backoff(self.failures, BACKOFF_CAP)
            unreachable = isinstance(exc, sftp_remote.UNREACHABLE)
            log.event(
                "sftp.unreachable" if unreachable else "sftp.failed",
                logging.WARNING if unreachable else logging.ERROR,
                url=self.remote.shown,
                error=str(exc) or type(exc).__name__,
                attempts=self.failures,
                retry_in=delay,
            )
            return delay
        self.failures = 0
        return self.settings.sftp_poll_seconds

    # -- one poll ----------------------------------------------------------------

    async def poll(self) -> None:
        """List the folder, finish recorded fetches, fetch what settled, upload results."""
        if not self._hold_role():
            return  # another process of this installation polls the server
        sftp = await self._client()
        entries = await sftp_remote.listing(sftp, self.remote.path)
        recorded = await self._finish_recorded(sftp, entries)
        for entry in self._settled(entries, recorded):
            if not self._hold_role():
                return
            await self._fetch(sftp, entry)
        if self.uploader:
            await self.uploader.upload_new(sftp)

    def _hold_role(self) -> bool:
        hold = max(60.0, self.settings.sftp_poll_seconds * 4)
        return sftp_state.take_role(self.store, self._owner, hold)

    def _settled(self, entries: dict[str, Entry], recorded: set[str]) -> list[Entry]:
        """Entries unchanged since a listing at least ``settle_seconds`` ago (and, in
        done-marker mode, whose marker is there)."""
        now = time.monotonic()
        self._seen = {p: s for p, s in self._seen.items() if p in entries}
        marker = self.settings.done_marker
        ready = []
        for path, entry in entries.items():
            if path in recorded or not names.is_candidate_name(entry.name, marker):
                continue
            if marker and path + names.DONE_SUFFIX not in entries:
                continue
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime) != (entry.size, entry.mtime):
                self._seen[path] = _Seen(entry.size, entry.mtime, now)
            elif now - seen.since >= self.settings.settle_seconds:
                ready.append(entry)
        return ready

    async def _fetch(self, sftp: asyncssh.SFTPClient, entry: Entry) -> None:
        folder = self.downloads / secrets.token_hex(8)
        folder.mkdir()
        target = folder / sftp_remote.local_name(entry.name)
        try:
            sha, size = await sftp_remote.download(sftp, entry.path, folder / PARTIAL)
            now = await sftp_remote.attributes(sftp, entry.path)
            if size != entry.size or now != (entry.size, entry.mtime):
                # It changed while it was read: it is not complete; it settles again.
                shutil.rmtree(folder, ignore_errors=True)
                self._seen.pop(entry.path, None)
                log.event("sftp.changed", name=entry.name, size=size)
                return
            sftp_remote.rename_durably(folder / PARTIAL, target)
        except asyncssh.SFTPError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, sftp_remote.CONNECTION_GONE):
                raise
            self._seen.pop(entry.path, None)
            log.event("sftp.fetch_failed", logging.WARNING, name=entry.name, error=str(exc))
            return
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        fetch = sftp_state.record_download(
            self.store, entry.path, entry.size, entry.mtime, sha, str(target)
        )
        if self._claim(fetch) is not None:
            await self._remove(sftp, sftp_state.get(self.store, fetch.id), entry)

    async def _finish_recorded(
        self, sftp: asyncssh.SFTPClient, entries: dict[str, Entry]
    ) -> set[str]:
        """Finish fetches an earlier poll (or run) left open; their remote paths."""
        paths = set()
        for fetch in sftp_state.open_fetches(self.store):
            entry = entries.get(fetch.remote_path)
            if fetch.state is FetchState.DOWNLOADED and self._claim(fetch) is None:
                continue
            if entry is not None and fetch.matches(entry.size, entry.mtime):
                paths.add(fetch.remote_path)
                await self._remove(sftp, sftp_state.get(self.store, fetch.id), entry)
            else:
                # Gone (removed or archived just before a crash), or replaced by a new
                # file under the same name, which settles and is fetched on its own.
                sftp_state.mark_removed(self.store, fetch.id)
        return paths

    # -- local side --------------------------------------------------------------

    def _claim(self, fetch: Fetch) -> int | None:
        """Claim the local copy (or find it claimed already); the file's id."""
        local = Path(fetch.local_path)
        file_id = claim.claim(self.settings, self.store, local) if local.exists() else None
        if file_id is None:
            # The claim's rename happened before a crash: the copy is in .claimed/, and
            # registered, now or by the orphan scan.
            file_id = sftp_state.registered_copy(self.store, fetch, local.name)
            if file_id is None and (orphans := claim.orphans(self.settings, self.store)):
                self.enqueue(orphans)
                file_id = sftp_state.registered_copy(self.store, fetch, local.name)
        if file_id is None:
            # No copy anywhere (someone deleted it): the remote file is fetched anew.
            log.event("sftp.copy_lost", logging.WARNING, name=local.name, fetch=fetch.id)
            sftp_state.forget(self.store, fetch.id)
            return None
        sftp_state.mark_claimed(self.store, fetch.id, file_id)
        self.enqueue([file_id])
        self.fetched.append(file_id)
        log.event("sftp.fetched", name=local.name, size=fetch.size, file_id=file_id)
        shutil.rmtree(local.parent, ignore_errors=True)
        return file_id

    def _clean_partials(self) -> None:
        """Delete what a crash left in the download folder that no fetch records."""
        keep = {Path(p).parent for p in sftp_state.local_paths(self.store)}
        for folder in self.downloads.iterdir():
            if folder not in keep:
                log.event("sftp.partial_removed", path=folder.name)
                if folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder)
                else:
                    folder.unlink()

    # -- remote side -------------------------------------------------------------

    async def _remove(self, sftp: asyncssh.SFTPClient, fetch: Fetch, entry: Entry) -> None:
        """The local copy is registered: the remote file goes, or moves to the archive."""
        try:
            if self.settings.sftp_archive:
                to = await sftp_remote.archive(sftp, entry, self.settings.sftp_archive)
                sftp_state.mark_removed(self.store, fetch.id, archived_to=to)
                log.event("sftp.archived", name=entry.name, file_id=fetch.file_id, to=to)
            else:
                await sftp.remove(entry.path)
                sftp_state.mark_removed(self.store, fetch.id)
                log.event("sftp.removed", name=entry.name, file_id=fetch.file_id)
            if self.settings.done_marker:
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await sftp.remove(entry.path + names.DONE_SUFFIX)
        except asyncssh.SFTPError as exc:
            if isinstance(exc, sftp_remote.CONNECTION_GONE):
                raise
            # Kept open: tried again at the next poll, never downloaded again.
            log.event("sftp.remove_failed", logging.WARNING, name=entry.name, error=str(exc))

    async def _client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            self._conn = await sftp_remote.connect(self.settings, self.remote)
            self._sftp = await self._conn.start_sftp_client(path_errors="surrogateescape")
        return self._sftp

    async def _disconnect(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            await sftp_remote.close(conn)
