"""Leases: which run holds a file, so a redelivered message stands back while it lives.

An owner is ``host:pid:random``; a lease whose owner is a dead process on this host
is taken over at once, any other waits for its time to run out.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid

from worker.errors import LeaseHeld
from worker.state import files
from worker.state.store import Store

HOST = socket.gethostname()


def lease_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """A lease held by a dead process on this host may be taken over at once."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_file(store: Store, file_id: int, owner: str, seconds: float, attempt: bool) -> bool:
    """Take or renew the file's lease; False when another live run holds it.
    ``attempt``: a new run of the file, counted in ``attempts`` if the lease is taken."""
    now = time.time()
    with store.atomic() as conn:
        cur = conn.execute(
            "UPDATE files SET lease_owner = ?, lease_until = ?, attempts = attempts + ?"
            " WHERE id = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
            (owner, now + seconds, int(attempt), file_id, owner, now),
        )
        return bool(cur.rowcount == 1)


def release_file(store: Store, file_id: int, owner: str) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE files SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (file_id, owner),
        )


def _clear_dead(store: Store, file_id: int, holder: str | None) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE files SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = ? AND lease_owner IS ?",
            (file_id, holder),
        )


class Lease:
    """A run's hold on one file, renewed as the run goes, so no other run takes it."""

    def __init__(self, store: Store, file_id: int, seconds: float) -> None:
        self.store = store
        self.file_id = file_id
        self.owner = lease_owner()
        self.seconds = seconds
        self.renewed = 0.0

    def take(self) -> None:
        """Raises LeaseHeld while a live run holds the file."""
        store, file_id = self.store, self.file_id
        if not take_file(store, file_id, self.owner, self.seconds, attempt=True):
            # Read again: a row read earlier may predate the lease that stopped us.
            holder = files.get(store, file_id).lease_owner
            if not owner_is_dead(holder):
                raise LeaseHeld(f"file {file_id} is leased to {holder}")
            _clear_dead(store, file_id, holder)
            if not take_file(store, file_id, self.owner, self.seconds, attempt=True):
                raise LeaseHeld(f"file {file_id} was taken over by another run")
        self.renewed = time.monotonic()

    def renew(self) -> None:
        # A lease renewed within the last quarter of its length has most of it left:
        # renewing after every small step would be a write for nothing.
        if time.monotonic() - self.renewed < self.seconds / 4:
            return
        if not take_file(self.store, self.file_id, self.owner, self.seconds, attempt=False):
            raise LeaseHeld(f"file {self.file_id}: lease lost")
        self.renewed = time.monotonic()

    def release(self) -> None:
        with contextlib.suppress(Exception):
            release_file(self.store, self.file_id, self.owner)
