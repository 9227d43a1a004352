"""SQLite, the source of truth: schema, transactions and the file state machine.

Redis only carries ids; every job reads the state here first and does only
what is not yet recorded. Writers use WAL, ``BEGIN IMMEDIATE`` and a busy
timeout: sqlite-utils' ``atomic()`` begins a deferred transaction, which fails
at once with "database is locked" when a second writer upgrades.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from worker import log
from worker.errors import StateError
from worker.schema import migrations

BUSY_TIMEOUT_MS = 60_000
FIRST_INVOICE_NUMBER = 100_000_000_001

#: The file state machine. Final states end a file's life.
STATES = (
    "received",
    "validating",
    "validated",
    "awaiting_approval",
    "processing",
    "processed",
    "rejected",
    "failed",
)
FINAL_STATES = frozenset({"processed", "rejected", "failed"})
#: States no run holds a file in (a person approves the one waiting): moving a file
#: there clears its lease in the same write.
RELEASED_STATES = FINAL_STATES | {"awaiting_approval"}
#: States a job may pick up and move on (awaiting_approval waits for a person).
RUNNABLE_STATES = ("received", "validating", "validated", "processing")
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "afs", "ceph")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def filesystem_type(path: Path, mounts_text: str | None = None) -> str | None:
    """The mount type holding ``path`` (from /proc/mounts), or None if unknown."""
    try:
        text = Path("/proc/mounts").read_text() if mounts_text is None else mounts_text
    except OSError:
        return None
    mounts = text.splitlines()
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, parts[2]
    return kind


def is_network_filesystem(path: Path, mounts_text: str | None = None) -> bool:
    kind = filesystem_type(path, mounts_text) or ""
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse")


class Store:
    """The state database. One connection per thread; safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # Writers queue for SQLite's write lock on two locks that wake the next waiter
        # at once: threads of this process on a mutex, processes on a flock of
        # state.lock. SQLite's own busy handler sleeps and polls (1, 2, 5 ... 100 ms),
        # which costs a small file more than its work. It still guards against writers
        # that do not take the flock (the busy timeout).
        self._writer = threading.Lock()
        self._lock_fd: int | None = None

    # -- connections -------------------------------------------------------

    def open(self) -> Store:
        """Create the database if needed and apply pending migrations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if is_network_filesystem(self.path.parent):
            raise StateError(
                f"{self.path.parent} is on a network filesystem "
                f"({filesystem_type(self.path.parent)}); SQLite's locks are not safe there. "
                "Keep var/ on a local disk (set INVOICE_WORKER_HOME to a local folder)."
            )
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            # Migrations begin deferred: serialise them across processes.
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = sqlite_utils.Database(self.conn, execute_plugins=False)
            migrations.apply(db)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        return self

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            old = os.umask(0o077)
            try:
                # Autocommit: every transaction is an explicit BEGIN IMMEDIATE in write().
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
                )
            finally:
                os.umask(old)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        with self._writer:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: takes the write lock up front, waits if busy."""
        conn = self.conn
        with self._writer:
            if self._lock_fd is None:
                self._lock_fd = os.open(
                    self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600
                )
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                else:
                    conn.execute("COMMIT")
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def row(self, sql: str, params: Any = ()) -> sqlite3.Row:
        """The row of a query that always has one (an aggregate: count, sum)."""
        row = self.one(sql, params)
        if row is None:
            raise StateError(f"no row from: {sql}")
        return row

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # -- files -------------------------------------------------------------

    def file(self, file_id: int) -> sqlite3.Row:
        row = self.one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            raise StateError(f"no file with id {file_id}")
        return row

    def add_file(self, name: str, claimed_path: str, sha256: str, size: int) -> int:
        """Record a claimed file; the same claimed path twice is the same file."""
        with self.write() as conn:
            row = conn.execute(
                "SELECT id FROM files WHERE claimed_path = ?", (claimed_path,)
            ).fetchone()
            if row:
                return int(row["id"])
            stamp = now_iso()
            cur = conn.execute(
                "INSERT INTO files (name, claimed_path, sha256, size, state, received_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'received', ?, ?)",
                (name, claimed_path, sha256, size, stamp, stamp),
            )
            file_id = int(cur.lastrowid or 0)
            conn.execute(
                "INSERT INTO transitions (file_id, state, at) VALUES (?, 'received', ?)",
                (file_id, stamp),
            )
        log.event("file.received", file_id=file_id, name=name, size=size, sha256=sha256[:16])
        return file_id

    def transition(self, conn: sqlite3.Connection, file_id: int, state: str, **fields: Any) -> None:
        """Move a file to ``state`` inside the caller's transaction, with its fields."""
        assert state in STATES, state
        stamp = now_iso()
        fields = {**fields, "state": state, "updated_at": stamp}
        if state in RELEASED_STATES:
            fields.update(lease_owner=None, lease_until=None)
        assignments = ", ".join(f"{key} = ?" for key in fields)
        conn.execute(f"UPDATE files SET {assignments} WHERE id = ?", (*fields.values(), file_id))
        conn.execute(
            "INSERT INTO transitions (file_id, state, at) VALUES (?, ?, ?)",
            (file_id, state, stamp),
        )

    def update_file(self, conn: sqlite3.Connection, file_id: int, **fields: Any) -> None:
        assignments = ", ".join(f"{key} = ?" for key in fields)
        conn.execute(f"UPDATE files SET {assignments} WHERE id = ?", (*fields.values(), file_id))

    # -- leases --------------------------------------------------------------

    def take_lease(self, file_id: int, owner: str, seconds: float, attempt: bool = False) -> bool:
        """Take or renew the file's lease; False when another live run holds it.
        ``attempt``: a new run of the file, counted in ``attempts`` if the lease is taken."""
        now = time.time()
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE files SET lease_owner = ?, lease_until = ?, attempts = attempts + ?"
                " WHERE id = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (owner, now + seconds, int(attempt), file_id, owner, now),
            )
            return cur.rowcount == 1

    def release_lease(self, file_id: int, owner: str) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE files SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (file_id, owner),
            )

    def files_to_resume(self, older_than: float, leased_too: bool = False) -> list[int]:
        """Unfinished files no live run holds, not enqueued in the last ``older_than`` s."""
        now = time.time()
        marks = ",".join("?" for _ in RUNNABLE_STATES)
        rows = self.all(
            f"SELECT id FROM files WHERE state IN ({marks})"
            " AND (? OR lease_until IS NULL OR lease_until < ?)"
            " AND (enqueued_at IS NULL OR enqueued_at < ?) ORDER BY id",
            (*RUNNABLE_STATES, leased_too, now, now - older_than),
        )
        return [int(r["id"]) for r in rows]

    def sizes(self, file_ids: list[int]) -> list[tuple[int, int]]:
        """``(id, size)`` of each of these files (in one query, however many)."""
        rows = self.all(
            "SELECT id, size FROM files WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(file_ids),),
        )
        return [(int(r["id"]), int(r["size"] or 0)) for r in rows]

    def mark_enqueued(self, file_ids: list[int]) -> None:
        if not file_ids:
            return
        with self.write() as conn:
            conn.executemany(
                "UPDATE files SET enqueued_at = ? WHERE id = ?",
                [(time.time(), i) for i in file_ids],
            )

    # -- counters ------------------------------------------------------------

    def reserve_numbers(self, conn: sqlite3.Connection, name: str, count: int) -> int:
        """Reserve ``count`` consecutive numbers inside the caller's transaction."""
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        start = int(row["value"]) if row else FIRST_INVOICE_NUMBER
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, start + count),
        )
        return start
