"""The email outbox: recorded in SQLite with the state change that caused it, sent after.

A message is claimed by pushing its ``next_attempt_at`` past the send time, so
two workers never send the same one at once; it is marked sent only after the
transport accepted it. A crash between the two means one more send, never a
lost message. ``.eml`` files are named by the message's key, so there a repeat
replaces the same file, and a round of sends is marked in one transaction.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Protocol

from notifications.transport import Transport
from worker.errors import DeliveryError, PermanentDeliveryError

#: How long a claim keeps others off; a sender killed mid-round blocks its claims this long.
CLAIM_SECONDS = 30.0
MAX_BACKOFF = 300.0


class StoreLike(Protocol):
    def write(self) -> Any: ...

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]: ...


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts, 0), MAX_BACKOFF))


def _claim(store: StoreLike, limit: int) -> list[sqlite3.Row]:
    now = time.time()
    with store.atomic() as conn:
        rows = conn.execute(
            "SELECT id, key, message, attempts FROM outbox WHERE state = 'pending'"
            " AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1 WHERE id = ?",
            [(now + CLAIM_SECONDS, r["id"]) for r in rows],
        )
    return rows


def _finish(store: StoreLike, outcomes: list[tuple[int, str, str | None, float]]) -> None:
    """Record (id, state, error, retry_at) for each message tried, in one transaction."""
    if not outcomes:
        return
    with store.atomic() as conn:
        conn.executemany(
            "UPDATE outbox SET state = ?, last_error = ?, next_attempt_at = ?,"
            " sent_at = CASE WHEN ? = 'sent' THEN strftime('%Y-%m-%dT%H:%M:%SZ','now') END"
            " WHERE id = ?",
            [(state, error, retry, state, row_id) for row_id, state, error, retry in outcomes],
        )


def deliver_due(store: StoreLike, transport: Transport, limit: int = 20) -> dict[str, int]:
    """Send what is due; returns counts of sent, failed (for good) and deferred messages."""
    counts = {"sent": 0, "failed": 0, "deferred": 0}
    rows = _claim(store, limit)
    # Where a repeat replaces the message (.eml files), a round is recorded in one
    # transaction; over SMTP each send is recorded at once, so a crash repeats one at most.
    per_round = transport.repeat_replaces
    outcomes: list[tuple[int, str, str | None, float]] = []
    try:
        for index, row in enumerate(rows):
            try:
                transport.send(f"{row['id']:08d}-{row['key'].replace(':', '-')}", row["message"])
            except PermanentDeliveryError as exc:
                outcomes.append((row["id"], "failed", str(exc), 0))
                counts["failed"] += 1
            except DeliveryError as exc:
                retry_at = time.time() + backoff(row["attempts"])
                outcomes.append((row["id"], "pending", str(exc), retry_at))
                counts["deferred"] += 1
                # The server is down or busy: stop this round, hand the untried back as they were.
                _release(store, [r["id"] for r in rows[index + 1 :]])
                break
            else:
                outcomes.append((row["id"], "sent", None, 0))
                counts["sent"] += 1
            if not per_round:
                _finish(store, outcomes)
                outcomes = []
    finally:
        _finish(store, outcomes)
    return counts


def _release(store: StoreLike, ids: list[int]) -> None:
    if not ids:
        return
    with store.atomic() as conn:
        conn.executemany(
            "UPDATE outbox SET next_attempt_at = 0, attempts = attempts - 1 WHERE id = ?",
            [(i,) for i in ids],
        )


def pending(store: StoreLike) -> int:
    return int(store.all("SELECT count(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"])
