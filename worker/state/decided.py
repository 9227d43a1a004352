"""A chunk's decisions, stored with its done mark: what each row of a payment or
cancellation file became, for its results file.

They live in the state database, not beside the chunk under ``var/``: the host that
finishes a file may not be the one that applied its first chunks (SPEC 14), and a
decision, once applied, cannot be made again (the invoice is paid by then).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import polars as pl

from worker.state.store import Connection, Store


def record(conn: Connection, file_id: int, chunk: int, results: pl.DataFrame) -> None:
    """Store a chunk's result rows, in the transaction that applies them."""
    buffer = io.BytesIO()
    results.write_ipc(buffer, compression="lz4")
    conn.execute(
        "INSERT INTO decided_chunks (file_id, chunk, results) VALUES (?, ?, ?)",
        (file_id, chunk, buffer.getvalue()),
    )


def read_all(store: Store, file_id: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(chunk, result rows)`` of the file's decided chunks, in chunk order."""
    sql = "SELECT chunk, results FROM decided_chunks WHERE file_id = ? ORDER BY chunk"
    for row in store.conn.execute(sql, (file_id,)):
        yield int(row[0]), pl.read_ipc(io.BytesIO(bytes(row[1])))
