"""The customer-mail queue: the ``invoices`` rows' ``email_*`` columns, and its sender lease.

Each invoice row is its own outbox entry: ``email_state`` goes pending ->
sending (claimed) -> sent or failed. Only the holder of the ``customer-mail``
lease claims, and it renews the lease in the transaction of every claim and
every mark, so a sender that lost the lease stops at its next step; whoever
takes the lease next puts back what a dead holder left in 'sending'.
"""

from __future__ import annotations

import time

from worker.state import leases
from worker.state.files import now_iso
from worker.state.store import Connection, Row, Store

LEASE = "customer-mail"
#: Longer than one SMTP exchange may take (transport TIMEOUT): the holder renews
#: it after every message, so only a dead or stuck holder lets it lapse.
LEASE_SECONDS = 120.0

COLUMNS = (
    "invoice_number, file_id, customer_email, customer_name, language, amount, currency,"
    " expires_at, order_description, payment_link_url, email_attempts, email_first_at"
)


def _put_back(conn: Connection, not_before: float | None) -> None:
    """Claimed but not attempted: back to pending, the claim's attempt undone."""
    conn.execute(
        "UPDATE invoices SET email_state = 'pending', email_attempts = email_attempts - 1,"
        " email_next_at = max(email_next_at, ?) WHERE email_state = 'sending'",
        (not_before or 0,),
    )


def take_sender(store: Store, owner: str) -> bool:
    """Become the one sender; False while another live sender is."""
    with store.atomic() as conn:
        if not leases.take_named(conn, LEASE, owner, LEASE_SECONDS):
            return False
        # Only a lease holder claims; the one before us is gone, so are its claims.
        _put_back(conn, None)
    return True


def release_sender(store: Store, owner: str, not_before: float | None = None) -> None:
    """Stop being the sender; what is still claimed is due again, not before ``not_before``."""
    with store.atomic() as conn:
        if leases.release_named(conn, LEASE, owner):
            _put_back(conn, not_before)


def claim(store: Store, owner: str, limit: int) -> list[Row]:
    """Claim up to ``limit`` due emails, the earliest due first; none once the lease is lost.
    ``email_attempts`` is read as it was before this claim."""
    now = time.time()
    with store.atomic() as conn:
        if not leases.renew_named(conn, LEASE, owner, LEASE_SECONDS):
            return []
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM invoices WHERE email_state = 'pending'"
            " AND email_next_at <= ? ORDER BY email_next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE invoices SET email_state = 'sending', email_attempts = email_attempts + 1,"
            " email_first_at = coalesce(email_first_at, ?) WHERE invoice_number = ?",
            [(now, r["invoice_number"]) for r in rows],
        )
    return list(rows)


def mark(
    store: Store, owner: str, number: int, state: str, error: str | None, next_at: float = 0
) -> bool:
    """Record one outcome and renew the lease together; False when the lease was lost."""
    stamp = now_iso()
    with store.atomic() as conn:
        conn.execute(
            "UPDATE invoices SET email_state = ?, email_error = ?, email_next_at = ?,"
            " email_sent_at = CASE WHEN ? = 'sent' THEN ? END, updated_at = ?"
            " WHERE invoice_number = ?",
            (state, error, next_at, state, stamp, stamp, number),
        )
        return leases.renew_named(conn, LEASE, owner, LEASE_SECONDS)


def hold_queue(store: Store, until: float) -> None:
    """The server is down: every due email waits, not just the one that found out."""
    with store.atomic() as conn:
        conn.execute(
            "UPDATE invoices SET email_next_at = ? WHERE email_state = 'pending'"
            " AND email_next_at < ?",
            (until, until),
        )


def due(store: Store) -> bool:
    """Whether a sender should run: emails are due, or a dead sender left some claimed."""
    if store.one(
        "SELECT 1 FROM invoices WHERE email_state = 'pending' AND email_next_at <= ? LIMIT 1",
        (time.time(),),
    ):
        return True
    if not store.one("SELECT 1 FROM invoices WHERE email_state = 'sending' LIMIT 1"):
        return False
    return leases.named_is_free(store, LEASE)


def open_count(store: Store) -> int:
    """Customer emails not yet sent or failed (pending, backing off, or being sent)."""
    # Two counts, each answered by its partial index, rather than one table scan.
    return sum(
        int(store.value(f"SELECT count(*) FROM invoices WHERE email_state = '{state}'"))
        for state in ("pending", "sending")
    )


# -- failures, for the administrators' report --------------------------------------


def unreported_failures(store: Store, report_kind: str) -> list[tuple[int, str]]:
    """(file id, name) of each file with failed emails, none still open, and no
    ``report_kind`` report recorded yet."""
    rows = store.all(
        "SELECT DISTINCT i.file_id, f.name FROM invoices i JOIN files f ON f.id = i.file_id"
        " WHERE i.email_state = 'failed' AND NOT EXISTS (SELECT 1 FROM outbox o"
        " WHERE o.key = 'file:' || i.file_id || ':' || ?)",
        (report_kind,),
    )
    return [
        (int(r["file_id"]), str(r["name"]))
        for r in rows
        if not store.one(
            "SELECT 1 FROM invoices WHERE file_id = ? AND email_state IN ('pending', 'sending')"
            " LIMIT 1",
            (r["file_id"],),
        )
    ]


def outcome_counts(store: Store, file_id: int) -> tuple[int, int]:
    """(sent, failed) customer emails of a file."""
    row = store.row(
        "SELECT sum(email_state = 'sent') AS sent, sum(email_state = 'failed') AS failed"
        " FROM invoices WHERE file_id = ?",
        (file_id,),
    )
    return int(row["sent"] or 0), int(row["failed"] or 0)


def failures(store: Store, file_id: int) -> list[Row]:
    """A file's failed emails, in line order, with why each failed."""
    return store.all(
        "SELECT line_number, merchant_reference, invoice_number, customer_email, email_error"
        " FROM invoices WHERE file_id = ? AND email_state = 'failed' ORDER BY line_number",
        (file_id,),
    )
