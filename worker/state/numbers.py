"""Invoice numbers: consecutive, unique, reserved inside the transaction that uses them."""

from __future__ import annotations

from worker.state.store import Connection

FIRST_INVOICE_NUMBER = 100_000_000_001


def reserve_invoice_numbers(conn: Connection, count: int) -> int:
    """Reserve ``count`` consecutive invoice numbers inside the caller's transaction;
    returns the first one reserved."""
    row = conn.execute("SELECT value FROM counters WHERE name = 'invoice_number'").fetchone()
    start = int(row[0]) if row else FIRST_INVOICE_NUMBER
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('invoice_number', ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (start + count,),
    )
    return start
