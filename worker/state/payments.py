"""Payments: recorded with the invoices they pay, inside the chunk's transaction.

Every write here runs in the caller's transaction, which also holds the chunk's
decision file rename and its done-mark: a chunk is applied once or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker.state.lookups import as_json_list
from worker.state.store import Connection, Store

#: A payment row: reference, file id, line, invoice number, amount, currency,
#: paid_at, created_at.
PaymentRow = tuple[str, int, int, int, int, str, str, str]
#: An invoice paid: paid_at, updated_at, and the invoice (or batch) number.
PaidRow = tuple[str, str, int]


def used_references(conn: Connection, references: Sequence[str]) -> list[str]:
    """Those of ``references`` that an earlier payment already used."""
    rows = conn.execute(
        "SELECT payment_reference FROM payments"
        " WHERE payment_reference IN (SELECT value FROM json_each(?))",
        (as_json_list(references),),
    )
    return [r[0] for r in rows]


def record(conn: Connection, rows: Iterable[PaymentRow]) -> None:
    """Add the payments inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO payments (payment_reference, file_id, line_number, invoice_number,"
        " amount, currency, paid_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def mark_paid(conn: Connection, rows: Iterable[PaidRow]) -> None:
    """Mark these invoices PAID (those still NEW) inside the caller's transaction."""
    conn.executemany(
        "UPDATE invoices SET status = 'PAID', paid_at = ?, updated_at = ?"
        " WHERE invoice_number = ? AND status = 'NEW'",
        rows,
    )


def mark_linked_paid(conn: Connection, rows: Iterable[PaidRow]) -> None:
    """Mark the invoices linked to these batches PAID (those still NEW): rule 9."""
    conn.executemany(
        "UPDATE invoices SET status = 'PAID', paid_at = ?, updated_at = ?"
        " WHERE batch_number = ? AND status = 'NEW'",
        rows,
    )


def currency_totals(store: Store, file_id: int) -> list[tuple[str, int, int]]:
    """``(currency, payments, total amount)`` of the payments a file applied."""
    rows = store.all(
        "SELECT currency, count(*) AS n, sum(amount) AS total FROM payments"
        " WHERE file_id = ? GROUP BY currency",
        (file_id,),
    )
    return [(r["currency"], r["n"], r["total"]) for r in rows]


def batches_paid(store: Store, file_id: int) -> int:
    """How many of a file's payments paid a batch invoice."""
    sql = (
        "SELECT count(*) AS n FROM payments JOIN invoices USING (invoice_number)"
        " WHERE payments.file_id = ? AND invoices.type = 'BATCH'"
    )
    return int(store.row(sql, (file_id,))["n"])
