"""Units of work done: a chunk's effects and its "done" row commit together.

A re-run skips every chunk that has its row, so a crash at any moment leaves
each chunk done once or not at all. The same for every kind (a batch request
is a chunk of its file, numbered by its position).
"""

from __future__ import annotations

from worker.state.files import now_iso
from worker.state.store import Connection, Store


def is_done(conn: Connection, file_id: int, chunk: int) -> bool:
    sql = "SELECT 1 FROM chunks WHERE file_id = ? AND chunk = ?"
    return conn.execute(sql, (file_id, chunk)).fetchone() is not None


def mark_done(conn: Connection, file_id: int, chunk: int, created: int) -> None:
    """Record the chunk done, inside the transaction that made its effects."""
    conn.execute(
        "INSERT INTO chunks (file_id, chunk, created, done_at) VALUES (?, ?, ?, ?)",
        (file_id, chunk, created, now_iso()),
    )


def created(store: Store, file_id: int) -> int:
    """What the file's chunks created (or applied) in all."""
    sql = "SELECT coalesce(sum(created), 0) FROM chunks WHERE file_id = ?"
    return int(store.value(sql, (file_id,)))


def forget(conn: Connection, file_id: int) -> int:
    """Drop the file's done marks, in the caller's transaction that also drops what they
    made (a file made again from its original); returns how many there were."""
    return int(conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,)).rowcount)
