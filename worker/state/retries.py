"""Retries: a file rejected as a whole, taken again from ``rejected/``.

The request is one transaction: the file goes back to ``received`` under its own id,
its claim path and what its last run found are replaced, the requesting process takes
its lease, and the move of the original back to a claim folder is recorded. Whoever
finds the move still open (the requester, or the file's next run after a crash) does
it; a move done is marked so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.errors import StateError
from worker.state.files import RUNNABLE_STATES, File, FileState, get, now_iso, transition
from worker.state.store import Store

#: What a run found, cleared so the file is read afresh under today's configuration.
_FOUND = (
    "kind",
    "duplicate_of",
    "error_code",
    "error_message",
    "error_line",
    "rows",
    "valid",
    "rejected",
    "existing",
    "created",
    "chunks",
    "number_base",
    "unknown_columns",
    "result_name",
    "final_path",
    "enqueued_at",
)


@dataclass(frozen=True, slots=True)
class Retry:
    """A recorded move of a rejected original back to a claim folder."""

    id: int
    file_id: int
    source: str
    target: str


def check(store: Store, file_id: int) -> File:
    """The file, if it may be tried again; StateError saying why not otherwise."""
    file = get(store, file_id)
    if file.state != FileState.REJECTED:
        again = file.state in RUNNABLE_STATES and count(store, file_id)
        under_way = " (it is being tried again already)" if again else ""
        raise StateError(f"file {file_id} is {file.state}, not rejected{under_way}")
    if file.error_code == "DUPLICATE_FILE":
        raise StateError(
            f"file {file_id} was rejected as DUPLICATE_FILE (same content as file"
            f" {file.duplicate_of}): trying it again would reject it again"
        )
    if not file.final_path:
        raise StateError(f"file {file_id}: its original has no place in rejected/")
    return file


def request(store: Store, file_id: int, target: str, owner: str, lease_seconds: float) -> Retry:
    """Record the retry of a rejected file whose original moves to ``target``, the file
    leased to ``owner``; StateError when it may not be tried again (checked again inside
    the transaction: a second request at the same moment finds it received)."""
    with store.atomic() as conn:
        source = str(check(store, file_id).final_path)
        cur = conn.execute(
            "INSERT INTO retries (file_id, source, target, requested_at) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (file_id, source, target, now_iso()),
        )
        retry_id = int(cur.fetchone()[0])
        cleared: dict[str, object] = dict.fromkeys(_FOUND)
        transition(
            conn,
            file_id,
            FileState.RECEIVED,
            claimed_path=target,
            lease_owner=owner,
            lease_until=time.time() + lease_seconds,
            **cleared,
        )
    return Retry(retry_id, file_id, source, target)


def pending(store: Store, file_id: int) -> Retry | None:
    """The file's retry whose move is not marked done, if any."""
    row = store.one(
        "SELECT id, file_id, source, target FROM retries"
        " WHERE file_id = ? AND moved_at IS NULL ORDER BY id DESC LIMIT 1",
        (file_id,),
    )
    return None if row is None else Retry(int(row[0]), int(row[1]), str(row[2]), str(row[3]))


def moved(store: Store, retry: Retry, owner: str | None = None) -> None:
    """Mark the move done; ``owner`` (the requester) lets go of the file's lease too, so
    that the reconciler enqueues it."""
    with store.atomic() as conn:
        conn.execute("UPDATE retries SET moved_at = ? WHERE id = ?", (now_iso(), retry.id))
        if owner is not None:
            conn.execute(
                "UPDATE files SET lease_owner = NULL, lease_until = NULL, enqueued_at = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (retry.file_id, owner),
            )


def count(store: Store, file_id: int) -> int:
    """How many times the file was tried again: its results and emails are told apart by it."""
    return int(store.value("SELECT count(*) FROM retries WHERE file_id = ?", (file_id,)))
