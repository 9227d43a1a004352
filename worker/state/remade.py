"""A file made again from its claimed original, its work under ``var/`` lost.

The host that validated a file keeps its chunks in its own ``var/`` (SPEC 14). When it
dies mid-file, the host that takes the file over validates it again from the original,
and what the dead host's chunks had created goes first, in one transaction. That is
safe only while nobody can have seen those invoices: their links are first told in the
results file, written once the file is processed; and none may be paid or cancelled.
"""

from __future__ import annotations

from worker.errors import StateError
from worker.state import chunks
from worker.state.store import Connection

#: What a file's processing wrote, keyed by ``file_id``, in the order they are dropped.
_TABLES = ("late_rejections", "existing_rows", "invoices")


def forget_invoices(conn: Connection, file_id: int) -> int:
    """Drop the invoices a file's lost chunks created, with their done marks; returns how
    many invoices there were. StateError if one of them has moved on since (paid,
    cancelled): then they are kept, and the file waits for an administrator."""
    moved = conn.execute(
        "SELECT count(*) FROM invoices WHERE file_id = ? AND status != 'NEW'", (file_id,)
    ).fetchone()[0]
    if moved:
        raise StateError(
            f"file {file_id}: its work was lost with another host, and {moved} of its "
            "invoices have been paid or cancelled since; it is left for an administrator"
        )
    created = int(
        conn.execute("SELECT count(*) FROM invoices WHERE file_id = ?", (file_id,)).fetchone()[0]
    )
    for table in _TABLES:
        conn.execute(f"DELETE FROM {table} WHERE file_id = ?", (file_id,))
    chunks.forget(conn, file_id)
    return created
