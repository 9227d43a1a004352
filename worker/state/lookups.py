"""Invoice reads the kinds share: the invoices a file names, and a batch's linked ones.

Documents, payments and batch requests all read invoices by number. They ask for
their own columns (each kind reads what its rules need), so the columns are named
by the caller and checked here against the table's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from worker.errors import StateError
from worker.state.store import Connection

#: The columns of ``invoices`` a kind may read through this module.
INVOICE_COLUMNS = frozenset(
    {
        "invoice_number",
        "merchant_reference",
        "transaction_id",
        "file_id",
        "line_number",
        "type",
        "status",
        "amount",
        "currency",
        "language",
        "expires_at",
        "order_description",
        "description",
        "payment_account",
        "payment_link_url",
        "batch_number",
        "created_at",
        "updated_at",
        "paid_at",
    }
)


def as_json_list(items: Iterable[Any]) -> str:
    """A parameter for ``IN (SELECT value FROM json_each(?))``: any number of values."""
    return json.dumps(list(items))


def _select_list(columns: Sequence[str]) -> str:
    # Column names are put into the SQL text: only the table's own are allowed.
    unknown = [c for c in columns if c not in INVOICE_COLUMNS]
    if unknown or not columns:
        raise StateError(f"invoices has no column {', '.join(unknown) or '(none asked)'}")
    return ", ".join(columns)


def invoices(
    conn: Connection, numbers: Iterable[int], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``columns`` of the invoices with these numbers (those that exist), by number."""
    sql = (
        f"SELECT {_select_list(columns)} FROM invoices"
        " WHERE invoice_number IN (SELECT value FROM json_each(?)) ORDER BY invoice_number"
    )
    return [tuple(r) for r in conn.execute(sql, (as_json_list(numbers),)).fetchall()]


def linked(
    conn: Connection, batch_numbers: Iterable[int], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``columns`` of the invoices linked to these batches, by batch, then by number."""
    sql = (
        f"SELECT {_select_list(columns)} FROM invoices"
        " WHERE batch_number IN (SELECT value FROM json_each(?))"
        " ORDER BY batch_number, invoice_number"
    )
    return [tuple(r) for r in conn.execute(sql, (as_json_list(batch_numbers),)).fetchall()]


def transaction_exists(conn: Connection, transaction_id: str | None) -> bool:
    """Whether an invoice (a batch) already carries this transaction id."""
    if not transaction_id:
        return False
    sql = "SELECT 1 FROM invoices WHERE transaction_id = ?"
    return conn.execute(sql, (transaction_id,)).fetchone() is not None
