"""Files: the typed record, the state machine, and every query on the ``files`` table.

received -> validating -> validated -> [awaiting_approval ->] processing -> processed,
or -> rejected from any stage before processing. Each transition is a row in
``transitions`` too, written in the same transaction as the change it records.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker import log
from worker.errors import StateError
from worker.state.store import Connection, Store


class FileState(StrEnum):
    """Where a file is in its life; stored as its text."""

    RECEIVED = "received"
    VALIDATING = "validating"
    VALIDATED = "validated"
    AWAITING_APPROVAL = "awaiting_approval"
    PROCESSING = "processing"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"


#: Final states end a file's life.
FINAL_STATES = frozenset({FileState.PROCESSED, FileState.REJECTED, FileState.FAILED})
#: States no run holds a file in (a person approves the one waiting): moving a file
#: there clears its lease in the same write.
RELEASED_STATES = FINAL_STATES | {FileState.AWAITING_APPROVAL}
#: States a job may pick up and move on (awaiting_approval waits for a person).
RUNNABLE_STATES = (
    FileState.RECEIVED,
    FileState.VALIDATING,
    FileState.VALIDATED,
    FileState.PROCESSING,
)


@dataclass(frozen=True, slots=True)
class File:
    """One dropped file, as the state database holds it."""

    id: int
    name: str
    claimed_path: str
    sha256: str
    size: int | None
    state: FileState
    received_at: str
    updated_at: str
    kind: str | None = None
    duplicate_of: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_line: int | None = None
    rows: int | None = None
    valid: int | None = None
    rejected: int | None = None
    #: Rows naming an invoice with the same content (SPEC 13): neither valid nor rejected.
    existing: int | None = None
    created: int | None = None
    chunks: int | None = None
    number_base: int | None = None
    unknown_columns: str | None = None
    result_name: str | None = None
    final_path: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    enqueued_at: float | None = None
    approved_at: str | None = None
    mtime_ns: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> File:
        fields = {name: row[name] for name in _COLUMNS}
        fields["state"] = FileState(fields["state"])
        return cls(**fields)

    def with_(self, **fields: Any) -> File:
        """This record with some fields brought up to date (the row is not written)."""
        return dataclasses.replace(self, **fields)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


_COLUMNS = tuple(f.name for f in dataclasses.fields(File))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def get(store: Store, file_id: int) -> File:
    row = store.one("SELECT * FROM files WHERE id = ?", (file_id,))
    if row is None:
        raise StateError(f"no file with id {file_id}")
    return File.from_row(row)


def add(
    store: Store, name: str, claimed_path: str, sha256: str, size: int, mtime_ns: int | None = None
) -> int:
    """Record a claimed file; the same claimed path twice is the same file."""
    with store.atomic() as conn:
        row = conn.execute(
            "SELECT id FROM files WHERE claimed_path = ?", (claimed_path,)
        ).fetchone()
        if row:
            return int(row[0])
        stamp = now_iso()
        cur = conn.execute(
            "INSERT INTO files (name, claimed_path, sha256, size, mtime_ns, state,"
            " received_at, updated_at) VALUES (?, ?, ?, ?, ?, 'received', ?, ?) RETURNING id",
            (name, claimed_path, sha256, size, mtime_ns, stamp, stamp),
        )
        file_id = int(cur.fetchone()[0])
        conn.execute(
            "INSERT INTO transitions (file_id, state, at) VALUES (?, 'received', ?)",
            (file_id, stamp),
        )
    log.event("file.received", file_id=file_id, name=name, size=size, sha256=sha256[:16])
    return file_id


def transition(conn: Connection, file_id: int, state: FileState, **fields: Any) -> None:
    """Move a file to ``state`` inside the caller's transaction, with its fields."""
    state = FileState(state)
    stamp = now_iso()
    fields = {**fields, "state": state.value, "updated_at": stamp}
    if state in RELEASED_STATES:
        fields.update(lease_owner=None, lease_until=None)
    update(conn, file_id, **fields)
    conn.execute(
        "INSERT INTO transitions (file_id, state, at) VALUES (?, ?, ?)",
        (file_id, state.value, stamp),
    )


def update(conn: Connection, file_id: int, **fields: Any) -> None:
    """Set some of a file's fields inside the caller's transaction."""
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise StateError(f"files has no column {', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{key} = ?" for key in fields)
    conn.execute(f"UPDATE files SET {assignments} WHERE id = ?", (*fields.values(), file_id))


def claimed_paths(store: Store) -> set[str]:
    return {r[0] for r in store.all("SELECT claimed_path FROM files")}


def earlier_duplicate(store: Store, file: File) -> tuple[int, str] | None:
    """The first earlier file with the same bytes, as (id, name), if any."""
    row = store.one(
        "SELECT id, name FROM files WHERE sha256 = ? AND id < ? AND duplicate_of IS NULL"
        " ORDER BY id LIMIT 1",
        (file.sha256, file.id),
    )
    return None if row is None else (int(row[0]), str(row[1]))


def result_name_taken(conn: Connection, stem: str) -> bool:
    sql = "SELECT 1 FROM files WHERE result_name = ? LIMIT 1"
    return conn.execute(sql, (stem,)).fetchone() is not None


def final_path_taken(conn: Connection, path: str, file_id: int) -> bool:
    """Whether another file was given ``path`` as its final place (it may not be there yet)."""
    sql = "SELECT 1 FROM files WHERE final_path = ? AND id != ? LIMIT 1"
    return conn.execute(sql, (path, file_id)).fetchone() is not None


def to_resume(store: Store, older_than: float, leased_too: bool = False) -> list[int]:
    """Unfinished files no live run holds, not enqueued in the last ``older_than`` s."""
    now = time.time()
    marks = ",".join("?" for _ in RUNNABLE_STATES)
    rows = store.all(
        f"SELECT id FROM files WHERE state IN ({marks})"
        " AND (? OR lease_until IS NULL OR lease_until < ?)"
        " AND (enqueued_at IS NULL OR enqueued_at < ?) ORDER BY id",
        (*RUNNABLE_STATES, leased_too, now, now - older_than),
    )
    return [int(r[0]) for r in rows]


def unfinished(store: Store) -> int:
    marks = ",".join("?" for _ in RUNNABLE_STATES)
    sql = f"SELECT count(*) FROM files WHERE state IN ({marks})"
    return int(store.value(sql, RUNNABLE_STATES))


def sizes(store: Store, file_ids: list[int]) -> list[tuple[int, int]]:
    """``(id, size)`` of each of these files (in one query, however many)."""
    rows = store.all(
        "SELECT id, size FROM files WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(file_ids),),
    )
    return [(int(r[0]), int(r[1] or 0)) for r in rows]


def mark_enqueued(store: Store, file_ids: Iterable[int]) -> None:
    stamp = time.time()
    params = [(stamp, i) for i in file_ids]
    if not params:
        return
    with store.atomic() as conn:
        conn.executemany("UPDATE files SET enqueued_at = ? WHERE id = ?", params)


def approve(store: Store, file_id: int) -> File:
    """Release a file waiting for approval; the reconciler enqueues it.

    Raises StateError when there is no such file or it is not waiting."""
    with store.atomic() as conn:
        row = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise StateError(f"no file with id {file_id}")
        if row[0] != FileState.AWAITING_APPROVAL:
            raise StateError(f"file {file_id} is {row[0]}, not awaiting approval")
        update(conn, file_id, approved_at=now_iso(), enqueued_at=None)
        transition(conn, file_id, FileState.PROCESSING)
    return get(store, file_id)


def listing(store: Store, limit: int) -> list[dict[str, Any]]:
    """The newest files with their states and counts, for ``invoice-worker status``."""
    rows = store.all(
        "SELECT id, name, kind, state, rows, valid, rejected, existing, created, error_code,"
        " result_name, received_at, updated_at FROM files ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]
