"""PostgreSQL, for several hosts sharing one state (``database_url``).

One connection per thread, in autocommit for reads; ``atomic()`` is ``BEGIN`` with
nested savepoints. Every write transaction first takes one advisory lock, held to its
end: writers go one at a time, as they do on SQLite (``BEGIN IMMEDIATE``), so a read
then write in one transaction (a lease taken, a number reserved) is never raced.
Unique constraints still decide what two files both claim.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.errors

from worker import log
from worker.errors import StateError
from worker.state import pgsql, schema_pg
from worker.state.store import Store, savepoint

#: Held by every write transaction (see the module's docstring).
WRITE_LOCK = 0x1E_5701_CF
#: Seconds a connection attempt may take before it counts as unreachable.
CONNECT_TIMEOUT = 10
#: Waits between tries while the database is unreachable: doubling up to the cap.
RETRY_FIRST, RETRY_CAP = 0.5, 30.0
#: What libpq says when nothing answers at the address (as opposed to a refusal).
_UNREACHABLE = re.compile(
    r"connection refused|no such file or directory|timeout expired|timed out"
    r"|could not translate host name|network is unreachable|no route to host"
    r"|the database system is (starting up|shutting down|in recovery mode|not yet accepting)"
    r"|server closed the connection|too many clients",
    re.I,
)


def masked(url: str, text: str) -> str:
    """``text`` without the password of ``url`` in it, wherever it appears."""
    password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    return text.replace(str(password), "***") if password else text


def unreachable(exc: psycopg.OperationalError) -> bool:
    """Whether a failed connection may succeed later (the server is down or starting),
    rather than never (wrong password, no such database or role)."""
    return bool(_UNREACHABLE.search(str(exc)))


def connect_waiting(
    url: str, wait: float | None, sleep: Callable[[float], None] = time.sleep
) -> pgsql.Connection:
    """A connection to ``url``; while the server is unreachable, tried again (logging
    ``state.database_unreachable``) for up to ``wait`` seconds (None: without end).
    A refusal (credentials, database) is a StateError at once."""
    deadline = None if wait is None else time.monotonic() + wait
    pause = RETRY_FIRST
    while True:
        try:
            return pgsql.open_connection(url, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            # libpq's first line says what failed; the next ones only hint.
            reason = (masked(url, str(exc)).strip().splitlines() or ["?"])[0]
            where = log.redact_url(url)
            if not unreachable(exc):
                raise StateError(
                    f"PostgreSQL at {where} refused the connection: {reason}"
                ) from None
            if deadline is not None and time.monotonic() + pause > deadline:
                raise StateError(f"PostgreSQL at {where} is unreachable: {reason}") from None
            log.event(
                "state.database_unreachable",
                logging.WARNING,
                url=where,
                error=reason,
                retry_in=pause,
            )
            sleep(pause)
            pause = min(pause * 2, RETRY_CAP)


class PostgresStore(Store):
    """The state in PostgreSQL at ``url``. One connection per thread."""

    integrity_errors = (psycopg.errors.IntegrityError,)

    def __init__(self, url: str, wait: float | None = 0) -> None:
        self.url = url
        #: Seconds the first connection waits for an unreachable server (None: forever).
        self.wait = wait
        self._local = threading.local()
        # Weak: a thread's connection goes (closed) with the thread (an HTTP request's
        # of /metrics, say); close() closes those still open.
        self._all: weakref.WeakSet[pgsql.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({log.redact_url(self.url)!r})"

    def open(self) -> PostgresStore:
        applied = schema_pg.apply(self.conn.raw)
        if applied:
            log.event("state.migrated", backend="postgresql", migrations=len(applied))
        return self

    def initialised(self) -> bool:
        return bool(schema_pg.applied(self.conn.raw))

    @property
    def conn(self) -> pgsql.Connection:
        local = self._local
        conn: pgsql.Connection | None = getattr(local, "conn", None)
        # A forked child must not share its parent's socket; a broken one is replaced.
        if conn is None or local.pid != os.getpid() or conn.closed:
            conn = connect_waiting(self.url, self.wait if conn is None else 0)
            local.conn, local.pid, local.depth = conn, os.getpid(), 0
            with self._lock:
                self._all.add(conn)
        return conn

    def close(self) -> None:
        """Close every connection of the store: it is not used after this."""
        with self._lock:
            opened, self._all = list(self._all), weakref.WeakSet()
        for conn in opened:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[pgsql.Connection]:
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
        self._local.depth = 1
        try:
            conn.execute("BEGIN")
            try:
                conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
                yield conn
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def stage(self, rows: Any) -> contextlib.AbstractContextManager[str]:
        from worker.state import staging_pg

        return staging_pg.copied(self.conn, rows)
