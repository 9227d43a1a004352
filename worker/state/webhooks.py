"""Merchant webhooks: recorded with the change that caused them (a payment, a
cancellation), a due-row queue after.

Claimed like the outbox (:mod:`worker.state.queue`), marked sent on a 2xx, or
pending again with a later ``next_attempt_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from worker.state import queue
from worker.state.files import now_iso
from worker.state.store import Connection, Store

TABLE = "webhooks"


#: The events a webhook tells of (its ``X-Invoice-Worker-Event`` header).
PAID = "invoice.paid"
CANCELLED = "invoice.cancelled"


def record(
    conn: Connection, rows: Iterable[tuple[str, int, bytes, str]], event: str = PAID
) -> None:
    """Add (key, invoice number, body, created_at) rows of ``event`` inside the caller's
    transaction; a key already recorded is kept as it is."""
    conn.executemany(
        "INSERT OR IGNORE INTO webhooks (key, invoice_number, body, created_at, event)"
        " VALUES (?, ?, ?, ?, ?)",
        ((*row, event) for row in rows),
    )


def claim(store: Store, limit: int, hold: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due webhooks (``id``, ``invoice_number``, ``event``, ``body``,
    ``attempts``)."""
    with store.atomic() as conn:
        return queue.claim_due(conn, TABLE, "invoice_number, event, body", limit=limit, hold=hold)


def sent(store: Store, row_id: int) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE webhooks SET state = 'sent', last_error = NULL, next_attempt_at = 0,"
            " sent_at = ? WHERE id = ?",
            (now_iso(), row_id),
        )


def deferred(store: Store, row_id: int, error: str, retry_at: float, rest: list[int]) -> None:
    """Record a failed POST, due again at ``retry_at``; ``rest``, claimed with it but not
    tried, is handed back untouched, due with it."""
    with store.atomic() as conn:
        conn.execute(
            "UPDATE webhooks SET last_error = ?, next_attempt_at = ? WHERE id = ?",
            (error, retry_at, row_id),
        )
        queue.put_back(conn, TABLE, rest, due_at=retry_at)


def due(store: Store) -> bool:
    """Whether a webhook is waiting whose time has come."""
    return queue.due(store.conn, TABLE)


def pending(store: Store) -> int:
    """Webhooks not yet answered with a 2xx."""
    return queue.pending(store.conn, TABLE)
