"""SFTP pull and push: the fetches from a remote inbox and the uploads to a remote outbox.

A fetch is recorded once its local copy is whole and fsynced, before it is claimed:
downloaded -> claimed (registered as a file) -> removed (from the remote folder, or
moved to the remote archive). A remote file that matches an open fetch (same path,
size and modification time) is never downloaded again, only finished: that is what
makes a crash anywhere between the download and the remote removal harmless.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker.state import leases
from worker.state.files import now_iso
from worker.state.store import Store

#: The named lease of the one poller of an installation (two would fetch a file twice).
LEASE = "sftp-poller"


class FetchState(StrEnum):
    """Where a fetched file is; stored as its text."""

    DOWNLOADED = "downloaded"
    CLAIMED = "claimed"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Fetch:
    """One remote file downloaded into the local inbox."""

    id: int
    remote_path: str
    size: int
    mtime: int
    sha256: str
    local_path: str
    state: FetchState
    created_at: str
    updated_at: str
    file_id: int | None = None
    archived_to: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Fetch:
        fields = {name: row[name] for name in _FETCH_COLUMNS}
        fields["state"] = FetchState(fields["state"])
        return cls(**fields)

    def matches(self, size: int, mtime: int) -> bool:
        """Whether a remote file of this size and time is the one this fetch copied."""
        return (self.size, self.mtime) == (size, mtime)


_FETCH_COLUMNS = tuple(f.name for f in dataclasses.fields(Fetch))


@dataclass(frozen=True, slots=True)
class Upload:
    """The last version of one result file uploaded to the remote outbox."""

    name: str
    size: int
    mtime_ns: int
    sha256: str
    remote_path: str
    uploaded_at: str


# -- fetches --------------------------------------------------------------------------


def record_download(
    store: Store, remote_path: str, size: int, mtime: int, sha256: str, local_path: str
) -> Fetch:
    """A whole local copy of ``remote_path`` exists at ``local_path``."""
    stamp = now_iso()
    with store.atomic() as conn:
        cur = conn.execute(
            "INSERT INTO sftp_fetches (remote_path, size, mtime, sha256, local_path, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (remote_path, size, mtime, sha256, local_path, FetchState.DOWNLOADED, stamp, stamp),
        )
        fetch_id = int(cur.fetchone()[0])
    return get(store, fetch_id)


def get(store: Store, fetch_id: int) -> Fetch:
    return Fetch.from_row(store.one("SELECT * FROM sftp_fetches WHERE id = ?", (fetch_id,)))


def mark_claimed(store: Store, fetch_id: int, file_id: int) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE sftp_fetches SET state = ?, file_id = ?, updated_at = ? WHERE id = ?",
            (FetchState.CLAIMED, file_id, now_iso(), fetch_id),
        )


def mark_removed(store: Store, fetch_id: int, archived_to: str | None = None) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE sftp_fetches SET state = ?, archived_to = ?, updated_at = ? WHERE id = ?",
            (FetchState.REMOVED, archived_to, now_iso(), fetch_id),
        )


def forget(store: Store, fetch_id: int) -> None:
    """A fetch whose local copy is nowhere: the remote file is fetched as if new."""
    with store.atomic() as conn:
        conn.execute("DELETE FROM sftp_fetches WHERE id = ?", (fetch_id,))


def open_fetches(store: Store) -> list[Fetch]:
    """Fetches whose remote file may still be on the server, oldest first."""
    rows = store.all(
        "SELECT * FROM sftp_fetches WHERE state != ? ORDER BY id", (FetchState.REMOVED,)
    )
    return [Fetch.from_row(r) for r in rows]


def registered_copy(store: Store, fetch: Fetch, name: str) -> int | None:
    """The file registered from this fetch's local copy, when the claim's rename happened
    but the fetch was not marked claimed: the newest file of these bytes and this name
    that no other fetch names."""
    value = store.value(
        "SELECT id FROM files WHERE sha256 = ? AND name = ? AND id NOT IN"
        " (SELECT file_id FROM sftp_fetches WHERE file_id IS NOT NULL AND id != ?)"
        " ORDER BY id DESC LIMIT 1",
        (fetch.sha256, name, fetch.id),
    )
    return None if value is None else int(value)


def local_paths(store: Store) -> set[str]:
    """Local copies of downloaded files not claimed yet: everything else in the download
    folder is a partial download, or one a crash left unrecorded."""
    rows = store.all(
        "SELECT local_path FROM sftp_fetches WHERE state = ?", (FetchState.DOWNLOADED,)
    )
    return {str(r[0]) for r in rows}


# -- the poller's role ----------------------------------------------------------------


def take_role(store: Store, owner: str, seconds: float) -> bool:
    """Be the one poller for ``seconds``; False while another live process is."""
    with store.atomic() as conn:
        return leases.renew_named(conn, LEASE, owner, seconds) or leases.take_named(
            conn, LEASE, owner, seconds
        )


def release_role(store: Store, owner: str) -> None:
    with store.atomic() as conn:
        leases.release_named(conn, LEASE, owner)


# -- uploads --------------------------------------------------------------------------


def uploads(store: Store) -> dict[str, Upload]:
    """The last upload of each result file, by name."""
    rows = store.all("SELECT * FROM sftp_uploads")
    return {r["name"]: Upload(**dict(r)) for r in rows}


def record_upload(
    store: Store, name: str, size: int, mtime_ns: int, sha256: str, remote_path: str
) -> None:
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO sftp_uploads (name, size, mtime_ns, sha256, remote_path, uploaded_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,"
            " remote_path = excluded.remote_path, uploaded_at = excluded.uploaded_at",
            (name, size, mtime_ns, sha256, remote_path, now_iso()),
        )
