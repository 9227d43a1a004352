"""The email outbox: each message recorded with the state change that caused it.

A due-row queue (:mod:`worker.state.queue`): claimed, then marked sent, failed,
or pending again with a later ``next_attempt_at``.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from notifications.prepared import Prepared
from worker.state import queue
from worker.state.files import now_iso
from worker.state.store import Connection, Store

TABLE = "outbox"

#: (id, state, error, retry_at) of one message tried.
Outcome = tuple[int, str, str | None, float]


def record(
    conn: Connection, key: str, kind: str, file_id: int | None, msg: Prepared | EmailMessage
) -> None:
    """Add a message inside the caller's transaction; a key already recorded is kept as is."""
    if not isinstance(msg, Prepared):
        msg = Prepared.of(msg)
    conn.execute(
        "INSERT OR IGNORE INTO outbox (key, kind, file_id, recipients, subject, message,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, kind, file_id, msg.to, msg.subject, msg.data, now_iso()),
    )


def claim(store: Store, limit: int, hold: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due messages (``id``, ``key``, ``message``, ``attempts``)."""
    with store.atomic() as conn:
        return queue.claim_due(conn, TABLE, "key, message", limit=limit, hold=hold)


def finish(store: Store, outcomes: list[Outcome]) -> None:
    """Record the outcome of each message tried, in one transaction."""
    if not outcomes:
        return
    stamp = now_iso()
    with store.atomic() as conn:
        conn.executemany(
            "UPDATE outbox SET state = ?, last_error = ?, next_attempt_at = ?,"
            " sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ?",
            [
                (state, error, retry, state, stamp, row_id)
                for row_id, state, error, retry in outcomes
            ],
        )


def put_back(store: Store, ids: list[int]) -> None:
    """Claimed but not tried: due again at once, as they were."""
    if not ids:
        return
    with store.atomic() as conn:
        queue.put_back(conn, TABLE, ids, due_at=0)


def due(store: Store) -> bool:
    """Whether an email is waiting whose time has come."""
    return queue.due(store.conn, TABLE)


def pending(store: Store) -> int:
    """Emails not yet sent or failed."""
    return queue.pending(store.conn, TABLE)
