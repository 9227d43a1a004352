"""The state database, and the only package that speaks SQL.

Redis only carries ids; every job reads the state here first and does only what
is not yet recorded, in the same transaction as its effect.

- ``store``: the one small interface (connections, ``atomic()``); ``sqlite`` (the
  embedded default) and ``postgres`` (``database_url``) implement it; ``pgsql``
  translates the shared SQL for PostgreSQL.
- ``schema``: numbered migrations, applied on open; ``schema_pg`` ports each.
- ``files``: the typed :class:`File` record, :class:`FileState`, transitions.
- ``chunks``: units of work done; ``decided``: the result rows stored with them;
  ``remade``: undoing a file's lost work before it is made again (another host died).
- ``leases``: which run holds a file, and which process holds a named role.
- ``staging`` and ``staging_pg``: a big chunk's bulk load (ADBC, or COPY).
- the rest: one module per table family (invoices, payments, batches, cancellations,
  outbox, webhooks, customer mail, status files, retries, SFTP fetches, metrics),
  called by the kinds and by delivery.
"""

from __future__ import annotations

from worker.settings import Settings
from worker.state.files import FINAL_STATES, RELEASED_STATES, RUNNABLE_STATES, File, FileState
from worker.state.sqlite import SQLiteStore
from worker.state.store import Connection, Store

__all__ = [
    "FINAL_STATES",
    "RELEASED_STATES",
    "RUNNABLE_STATES",
    "Connection",
    "File",
    "FileState",
    "SQLiteStore",
    "Store",
    "connect",
    "store_for",
]


def store_for(settings: Settings, wait: float | None = 0) -> Store:
    """The state store the settings name, not opened: PostgreSQL at ``database_url``, or
    SQLite in ``var/state.db``. ``wait``: seconds an unreachable PostgreSQL is waited
    for (None: without end)."""
    if settings.database_url:
        # Imported here: psycopg is not loaded by an install that keeps SQLite.
        from worker.state.postgres import PostgresStore

        return PostgresStore(settings.database_url, wait=wait)
    return SQLiteStore(settings.state_db)


def connect(settings: Settings, wait: float | None = 0) -> Store:
    """The state store, opened (created and migrated if need be)."""
    return store_for(settings, wait).open()
