"""The email outbox: each message recorded with the state change that caused it."""

from __future__ import annotations

import time
from email.message import EmailMessage

from worker.state.store import Connection, Store


def record(conn: Connection, key: str, kind: str, file_id: int | None, msg: EmailMessage) -> None:
    """Add a message inside the caller's transaction; a key already recorded is kept as is."""
    conn.execute(
        "INSERT OR IGNORE INTO outbox (key, kind, file_id, recipients, subject, message,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
        (key, kind, file_id, str(msg["To"]), str(msg["Subject"]), msg.as_bytes()),
    )


def due(store: Store) -> bool:
    """Whether an email is waiting whose time has come."""
    sql = "SELECT 1 FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? LIMIT 1"
    return store.one(sql, (time.time(),)) is not None
