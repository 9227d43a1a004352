"""The state database, and the only package that speaks SQL.

Redis only carries ids; every job reads the state here first and does only what
is not yet recorded, in the same transaction as its effect.

- ``store``: the one small interface (connections, ``atomic()``); ``sqlite``
  implements it.
- ``schema``: numbered migrations, applied on open.
- ``files``: the typed :class:`File` record, :class:`FileState`, transitions.
- ``chunks``: units of work done, and the number counters.
- ``leases``: which run holds a file.
- the rest: one module per table family (invoices, payments, batches, outbox,
  webhooks, customer mail), called by the kinds and by delivery.
"""

from __future__ import annotations

from pathlib import Path

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
]


def connect(path: Path) -> Store:
    """The state store at ``path``, opened (created and migrated if need be)."""
    return SQLiteStore(path).open()
