"""Big chunks reach the state database through a staging file: Arrow in, SQL out.

Binding a chunk's rows one at a time through the ``sqlite3`` module is most of what
creating an invoice costs. ADBC's SQLite driver writes an Arrow table in C++ instead,
and one ``INSERT ... SELECT`` then moves the rows into ``invoices`` inside SQLite
(:func:`worker.state.invoices.staged`).

The driver bundles its own SQLite library. Two SQLite libraries in one process must
never have the same database file open: closing a file drops every POSIX lock the
process holds on it, the other library's included. So ADBC only ever writes a private
staging file and closes it before the state database attaches it; nothing else opens
that file, and a re-run writes it again from the chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from worker.state.store import Connection

#: Chunks with fewer valid rows than this are bound row by row: for a small file the
#: staging file (create, write, attach, delete) costs more than it saves.
STAGE_MIN_ROWS = 1_000
SCHEMA = "stage"
TABLE = f"{SCHEMA}.rows"


def write(rows: pl.DataFrame, path: Path) -> None:
    """``rows`` as table ``rows`` of a new SQLite file at ``path``."""
    # Imported here: it takes 0.2 s, and small files and most commands never need it.
    import adbc_driver_sqlite.dbapi as adbc

    # Autocommit, so that the PRAGMAs apply. No journal and no syncs: the file is
    # thrown away after one read, and a crash makes it again from the chunk.
    try:
        with adbc.connect(str(path), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("PRAGMA journal_mode = OFF")
            cur.execute("PRAGMA synchronous = OFF")
            cur.adbc_ingest("rows", rows.to_arrow(), mode="create")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def attached(conn: Connection, path: Path) -> Iterator[str]:
    """The staging file attached to ``conn`` for the block, then deleted, whatever
    happens; yields the table's name.

    Enter it before ``Store.atomic()``: ``BEGIN IMMEDIATE`` locks every attached
    database, and DETACH fails while that transaction is open.
    """
    try:
        conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (str(path),))
        try:
            yield TABLE
        finally:
            conn.execute(f"DETACH DATABASE {SCHEMA}")
    finally:
        path.unlink(missing_ok=True)
