"""Leases: which run holds a file, and which process holds a named role.

A file's lease lives on its ``files`` row, so a redelivered message stands back
while the run holding it lives; a heartbeat thread keeps it while its process
lives. A named lease (a row of ``leases``, e.g. the paced SMTP sender, or one
lane of the customer-mail queue) makes one process at a time play a role across
all workers. Either way an owner is ``host:pid:random``; a lease whose owner is
a dead process on this host is taken over at once, any other waits for its time
to run out.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid

from worker.errors import LeaseHeld
from worker.state import files
from worker.state.store import Connection, Store

HOST = socket.gethostname()


def set_host(name: str | None) -> None:
    """Name this process's host in the leases it takes (``host_name``); None: the system's."""
    global HOST
    HOST = name or socket.gethostname()


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


# -- named leases: one holder of a role ------------------------------------------------


def take_named(conn: Connection, name: str, owner: str, seconds: float) -> bool:
    """Take the lease ``name`` for ``seconds`` inside the caller's transaction; False
    while another live owner holds it."""
    now = time.time()
    held = conn.execute("SELECT owner, until FROM leases WHERE name = ?", (name,)).fetchone()
    if held and held["until"] > now and not owner_is_dead(held["owner"]):
        return False
    conn.execute(
        "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) ON CONFLICT(name)"
        " DO UPDATE SET owner = excluded.owner, until = excluded.until",
        (name, owner, now + seconds),
    )
    return True


def renew_named(conn: Connection, name: str, owner: str, seconds: float) -> bool:
    """Push the lease's end ``seconds`` from now; False when ``owner`` no longer holds it."""
    cur = conn.execute(
        "UPDATE leases SET until = ? WHERE name = ? AND owner = ?",
        (time.time() + seconds, name, owner),
    )
    return bool(cur.rowcount == 1)


def release_named(conn: Connection, name: str, owner: str) -> bool:
    """Let go of the lease; False when ``owner`` did not hold it (it was taken over)."""
    cur = conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
    return bool(cur.rowcount == 1)


def named_is_free(store: Store, name: str) -> bool:
    """Whether the lease ``name`` could be taken now: unheld, run out, or its owner dead."""
    held = store.one("SELECT owner, until FROM leases WHERE name = ?", (name,))
    return held is None or held["until"] <= time.time() or owner_is_dead(held["owner"])


# -- file leases ----------------------------------------------------------------------


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


def extend_file(store: Store, file_id: int, owner: str, seconds: float) -> bool:
    """Extend a lease ``owner`` still holds; False when it holds it no more."""
    with store.atomic() as conn:
        cur = conn.execute(
            "UPDATE files SET lease_until = ? WHERE id = ? AND lease_owner = ?",
            (time.time() + seconds, file_id, owner),
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
        #: Set by the heartbeat when the lease is no longer this run's.
        self.lost = False

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
        HEARTBEAT.add(self)

    def renew(self) -> None:
        if self.lost:
            raise LeaseHeld(f"file {self.file_id}: lease lost")
        # A lease renewed within the last quarter of its length has most of it left:
        # renewing after every small step would be a write for nothing.
        if time.monotonic() - self.renewed < self.seconds / 4:
            return
        if not take_file(self.store, self.file_id, self.owner, self.seconds, attempt=False):
            raise LeaseHeld(f"file {self.file_id}: lease lost")
        self.renewed = time.monotonic()

    def release(self) -> None:
        HEARTBEAT.discard(self)
        with contextlib.suppress(Exception):
            release_file(self.store, self.file_id, self.owner)

    def beat(self) -> None:
        """Extend the lease if a quarter of it has gone (the heartbeat calls this)."""
        if time.monotonic() - self.renewed < self.seconds / 4:
            return
        try:
            held = extend_file(self.store, self.file_id, self.owner, self.seconds)
        except Exception:
            # A busy or closed database: the next beat tries again, well within the lease.
            return
        if held:
            self.renewed = time.monotonic()
        else:
            # Released with the file's final state, or (the process stalled past the
            # lease) taken over: either way this run must not go on with it.
            self.lost = True
            HEARTBEAT.discard(self)


class Heartbeat:
    """One thread a process that keeps every lease its runs hold alive while the process
    lives: a long step (hashing or validating a 3 GB file) never outlives its lease, and
    a dead process's leases run out."""

    def __init__(self) -> None:
        self._leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # A lease added while the thread sleeps out an idle wait (60 s / 8) wakes it: a
        # short lease must not wait that long for its first beat.
        self._wake = threading.Event()

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases.add(lease)
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def discard(self, lease: Lease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            with self._lock:
                leases = list(self._leases)
            for lease in leases:
                lease.beat()
            shortest = min((lease.seconds for lease in leases), default=60.0)
            self._wake.wait(max(shortest / 8, 0.1))
            self._wake.clear()


HEARTBEAT = Heartbeat()
