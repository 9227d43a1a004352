"""Status files: the invoice status changes not yet in one, and the files recorded.

A trigger (migration m011) adds a ``status_changes`` row in the transaction that
changes an invoice's status. A status file is recorded, with the changes it takes,
in one transaction before it is written; it is marked written after. So a crash
between the two leaves it recorded: written again, same name, same rows. One writer
at a time holds the named lease :data:`LEASE`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from worker.state.files import now_iso
from worker.state.leases import release_named, take_named
from worker.state.store import Store

LEASE = "status-files"
COLUMNS = (
    "invoice_number",
    "merchant_reference",
    "type",
    "status",
    "amount",
    "currency",
    "changed_at",
    "payment_reference",
    "batch_number",
)


@dataclass(frozen=True, slots=True)
class StatusFile:
    """A status file recorded: its name in outbox/ and how many changes it lists."""

    id: int
    name: str
    changes: int


def take(store: Store, owner: str, seconds: float) -> bool:
    with store.atomic() as conn:
        return take_named(conn, LEASE, owner, seconds)


def release(store: Store, owner: str) -> None:
    with store.atomic() as conn:
        release_named(conn, LEASE, owner)


def unwritten(store: Store) -> list[StatusFile]:
    """Files recorded and not marked written (a crash came between), oldest first."""
    rows = store.all(
        "SELECT id, name, changes FROM status_files WHERE written_at IS NULL ORDER BY id"
    )
    return [StatusFile(int(r[0]), str(r[1]), int(r[2])) for r in rows]


def due(store: Store, now: float, interval: float) -> bool:
    """Whether a file is to be written: one recorded and not written, or changes not in
    a file and the interval passed. A read: the loop asks every second."""
    if store.one("SELECT 1 FROM status_files WHERE written_at IS NULL LIMIT 1"):
        return True
    if not store.one("SELECT 1 FROM status_changes WHERE status_file IS NULL LIMIT 1"):
        return False
    last = store.value("SELECT max(recorded_at) FROM status_files")
    return last is None or now - float(last) >= interval


def record(
    store: Store, name_at: Callable[[float], str], now: float, interval: float
) -> StatusFile | None:
    """Record a file of every change not yet in one, named ``name_at(now)``; None when
    there is none, or the last file was recorded less than ``interval`` s before ``now``."""
    with store.atomic() as conn:
        last = conn.execute("SELECT max(recorded_at) FROM status_files").fetchone()[0]
        if last is not None and now - float(last) < interval:
            return None
        sql = "SELECT count(*) FROM status_changes WHERE status_file IS NULL"
        count = int(conn.execute(sql).fetchone()[0])
        if count == 0:
            return None
        name, stem = name_at(now), name_at(now).removesuffix(".csv")
        taken = "SELECT 1 FROM status_files WHERE name = ?"
        n = 1
        while conn.execute(taken, (name,)).fetchone() is not None:
            # A clock set back: the second was used already.
            n += 1
            name = f"{stem}-{n}.csv"
        cur = conn.execute(
            "INSERT INTO status_files (name, changes, recorded_at) VALUES (?, ?, ?) RETURNING id",
            (name, count, now),
        )
        file_id = int(cur.fetchone()[0])
        conn.execute(
            "UPDATE status_changes SET status_file = ? WHERE status_file IS NULL", (file_id,)
        )
    return StatusFile(file_id, name, count)


def changes(store: Store, status_file: StatusFile) -> Iterator[tuple[Any, ...]]:
    """The file's changes, in the order they were made, as rows of :data:`COLUMNS`."""
    cur = store.conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM status_changes WHERE status_file = ? ORDER BY id",
        (status_file.id,),
    )
    for row in cur:
        yield tuple(row)


def written(store: Store, status_file: StatusFile) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE status_files SET written_at = ? WHERE id = ?", (now_iso(), status_file.id)
        )
