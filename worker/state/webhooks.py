"""Merchant webhooks: each recorded in the transaction that applies its payment."""

from __future__ import annotations

from collections.abc import Iterable

from worker.state.store import Connection


def record(conn: Connection, rows: Iterable[tuple[str, int, bytes, str]]) -> None:
    """Add (key, invoice number, body, created_at) rows inside the caller's transaction;
    a key already recorded is kept as it is."""
    conn.executemany(
        "INSERT OR IGNORE INTO webhooks (key, invoice_number, body, created_at)"
        " VALUES (?, ?, ?, ?)",
        rows,
    )
