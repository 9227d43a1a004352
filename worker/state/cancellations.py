"""Cancellations: recorded with the invoices they cancel, inside the chunk's transaction.

Every write here runs in the caller's transaction, which also holds the chunk's
decision file and its done-mark: a chunk is applied once or not at all. An invoice
is cancelled once ever (``cancellations.invoice_number`` is the key), and only while
it is NEW and in no batch; a cancelled batch releases its invoices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from worker.state.lookups import as_json_list
from worker.state.store import Connection, Store

#: The invoices' columns a cancellation row is decided on, in this order.
STATE_COLUMNS = (
    "invoice_number",
    "merchant_reference",
    "type",
    "status",
    "batch_number",
    "amount",
    "currency",
)
_SELECT = ", ".join(STATE_COLUMNS)

#: A cancellation: invoice number, file id, line, type, amount, currency, reason,
#: released invoices (JSON list), cancelled_at.
CancellationRow = tuple[int, int, int, str, int, str, str | None, str, str]


def by_reference(conn: Connection, references: Sequence[str]) -> list[tuple[Any, ...]]:
    """:data:`STATE_COLUMNS` of the invoices with these merchant references."""
    rows = conn.execute(
        f"SELECT {_SELECT} FROM invoices"
        " WHERE merchant_reference IN (SELECT value FROM json_each(?)) ORDER BY invoice_number",
        (as_json_list(references),),
    )
    return [tuple(r) for r in rows.fetchall()]


def by_number(conn: Connection, numbers: Sequence[int]) -> list[tuple[Any, ...]]:
    """:data:`STATE_COLUMNS` of the invoices with these numbers."""
    rows = conn.execute(
        f"SELECT {_SELECT} FROM invoices"
        " WHERE invoice_number IN (SELECT value FROM json_each(?)) ORDER BY invoice_number",
        (as_json_list(numbers),),
    )
    return [tuple(r) for r in rows.fetchall()]


def cancelled_by_file(conn: Connection, file_id: int, numbers: Sequence[int]) -> list[int]:
    """Those of ``numbers`` that this file cancelled (in an earlier chunk)."""
    rows = conn.execute(
        "SELECT invoice_number FROM cancellations WHERE file_id = ?"
        " AND invoice_number IN (SELECT value FROM json_each(?))",
        (file_id, as_json_list(numbers)),
    )
    return [int(r[0]) for r in rows]


def mark_cancelled(conn: Connection, numbers: Sequence[int], stamp: str) -> int:
    """Mark these invoices CANCELLED (those NEW and in no batch); how many were.

    A customer email or SMS not yet sent is withheld: its payment link no longer pays.
    One already being sent (``sending``) is left to finish."""
    cur = conn.execute(
        "UPDATE invoices SET status = 'CANCELLED', updated_at = ?,"
        " email_state = CASE email_state WHEN 'pending' THEN 'withheld' ELSE email_state END,"
        " sms_state = CASE sms_state WHEN 'pending' THEN 'withheld' ELSE sms_state END"
        " WHERE invoice_number IN (SELECT value FROM json_each(?))"
        " AND status = 'NEW' AND batch_number IS NULL",
        (stamp, as_json_list(numbers)),
    )
    return int(cur.rowcount)


def release(conn: Connection, batches: Sequence[int], stamp: str) -> int:
    """Release the invoices linked to these (cancelled) batches; how many were."""
    cur = conn.execute(
        "UPDATE invoices SET batch_number = NULL, updated_at = ?"
        " WHERE batch_number IN (SELECT value FROM json_each(?))",
        (stamp, as_json_list(batches)),
    )
    return int(cur.rowcount)


def record(conn: Connection, rows: Iterable[CancellationRow]) -> None:
    """Add the cancellations inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO cancellations (invoice_number, file_id, line_number, type, amount,"
        " currency, reason, released, cancelled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def currency_totals(store: Store, file_id: int) -> list[tuple[str, int, int]]:
    """``(currency, invoices, total amount)`` of what a file cancelled."""
    rows = store.all(
        "SELECT currency, count(*) AS n, sum(amount) AS total FROM cancellations"
        " WHERE file_id = ? GROUP BY currency",
        (file_id,),
    )
    return [(r["currency"], r["n"], r["total"]) for r in rows]


def batch_counts(store: Store, file_id: int) -> tuple[int, int]:
    """``(batches cancelled, invoices they released)`` by a file."""
    row = store.row(
        "SELECT count(*) AS n, coalesce(sum(json_array_length(released)), 0) AS released"
        " FROM cancellations WHERE file_id = ? AND type = 'BATCH'",
        (file_id,),
    )
    return int(row["n"]), int(row["released"])
