"""Batch requests: each decided, and its batch invoice created, in one transaction.

The writes run inside the caller's ``BEGIN IMMEDIATE`` transaction, with the
request's done-mark (``worker.state.chunks``): a request is decided once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.state.lookups import as_json_list
from worker.state.store import Connection, Store


@dataclass(frozen=True, slots=True)
class BatchInvoice:
    """A batch invoice to create: what ``rules.batches`` derived from its invoices."""

    invoice_number: int
    transaction_id: str | None
    file_id: int
    line_number: int | None
    amount: int
    currency: str
    language: str | None
    expires_at: str
    payment_account: str | None
    token: str
    payment_link_url: str
    description: str | None
    stamp: str


def create(conn: Connection, batch: BatchInvoice) -> None:
    """Add the batch invoice (type BATCH, status NEW) inside the caller's transaction."""
    conn.execute(
        "INSERT INTO invoices (invoice_number, transaction_id, file_id, line_number, type,"
        " status, amount, currency, language, expires_at, payment_account, token,"
        " payment_link_url, description, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'BATCH', 'NEW', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            batch.invoice_number,
            batch.transaction_id,
            batch.file_id,
            batch.line_number,
            batch.amount,
            batch.currency,
            batch.language,
            batch.expires_at,
            batch.payment_account,
            batch.token,
            batch.payment_link_url,
            batch.description,
            batch.stamp,
            batch.stamp,
        ),
    )


def link(conn: Connection, batch_number: int, children: Sequence[int], stamp: str) -> int:
    """Link the invoices to the batch (those NEW, SINGLE and in no batch); how many were."""
    cur = conn.execute(
        "UPDATE invoices SET batch_number = ?, updated_at = ?"
        " WHERE invoice_number IN (SELECT value FROM json_each(?))"
        " AND batch_number IS NULL AND status = 'NEW' AND type = 'SINGLE'",
        (batch_number, stamp, as_json_list(children)),
    )
    return int(cur.rowcount)


@dataclass(frozen=True, slots=True)
class Decision:
    """A request's answer, as its file's results list it (``result`` is the JSON entry)."""

    file_id: int
    position: int
    transaction_id: str | None
    status: str
    http_status: int
    invoice_number: int | None
    result: str
    decided_at: str


def record(conn: Connection, decision: Decision) -> None:
    """Record the decision inside the transaction that made it."""
    conn.execute(
        "INSERT INTO batch_requests (file_id, position, transaction_id, status, http_status,"
        " invoice_number, result, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            decision.file_id,
            decision.position,
            decision.transaction_id,
            decision.status,
            decision.http_status,
            decision.invoice_number,
            decision.result,
            decision.decided_at,
        ),
    )


def decided(store: Store, file_id: int) -> set[int]:
    """The positions of the file's requests already decided."""
    rows = store.all("SELECT position FROM batch_requests WHERE file_id = ?", (file_id,))
    return {int(r["position"]) for r in rows}


def counts(store: Store, file_id: int) -> tuple[int, int]:
    """``(decided, rejected)``: how many of the file's requests were decided, and refused."""
    row = store.row(
        "SELECT count(*) AS n, count(CASE WHEN status = 'REJECTED' THEN 1 END) AS rejected"
        " FROM batch_requests WHERE file_id = ?",
        (file_id,),
    )
    return int(row["n"]), int(row["rejected"])


def results(store: Store, file_id: int) -> list[str]:
    """The file's results entries (JSON texts), in request order."""
    rows = store.all(
        "SELECT result FROM batch_requests WHERE file_id = ? ORDER BY position", (file_id,)
    )
    return [str(r["result"]) for r in rows]
