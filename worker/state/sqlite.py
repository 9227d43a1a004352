"""SQLite, the embedded default: a file under ``var/``, WAL, one writer at a time.

Writers use WAL, ``BEGIN IMMEDIATE`` and a busy timeout: sqlite-utils' own
``atomic()`` begins a deferred transaction, which fails at once with "database
is locked" when a second writer upgrades.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import sqlite_utils

from worker.errors import StateError
from worker.state import staging
from worker.state.invoices import BULK_CACHE_KIB
from worker.state.mounts import filesystem_type, is_network_filesystem
from worker.state.schema import migrations
from worker.state.store import Store, savepoint

BUSY_TIMEOUT_MS = 60_000


class SQLiteStore(Store):
    """``var/state.db``. One connection per thread; safe across processes on one host."""

    integrity_errors = (sqlite3.IntegrityError,)

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

    def open(self) -> SQLiteStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if is_network_filesystem(self.path.parent):
            raise StateError(
                f"{self.path.parent} is on a network filesystem "
                f"({filesystem_type(self.path.parent)}); SQLite's locks are not safe there. "
                "Keep var/ on a local disk (set INVOICE_WORKER_HOME to a local folder)."
            )
        with open(self.path.with_suffix(".lock"), "a") as lock:
            # Migrations begin deferred: serialise them across processes.
            fcntl.flock(lock, fcntl.LOCK_EX)
            migrations.apply(sqlite_utils.Database(self.conn, execute_plugins=False))
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        return self

    def initialised(self) -> bool:
        return self.path.exists()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            old = os.umask(0o077)
            try:
                # Autocommit: every transaction is an explicit BEGIN IMMEDIATE in atomic().
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
            self._local.depth = 0
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
    def atomic(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        depth = self._local.depth
        if depth:
            self._local.depth = depth + 1
            try:
                with savepoint(conn, depth) as inner:
                    yield inner
            finally:
                self._local.depth = depth
            return
        with self._writer:
            if self._lock_fd is None:
                self._lock_fd = os.open(
                    self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600
                )
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._local.depth = 1
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
                self._local.depth = 0
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def prepare_stage(self, rows: pl.DataFrame, path: Path) -> Any:
        staging.write(rows, path)
        return path

    def stage(self, prepared: Any) -> contextlib.AbstractContextManager[str]:
        return staging.attached(self.conn, Path(prepared))

    def tune_for_bulk(self) -> None:
        self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
