"""The customer-mail queue: the ``invoices`` rows' ``email_*`` columns, and its leases.

Each invoice row is its own outbox entry: ``email_state`` goes pending ->
sending (claimed) -> sent or failed. The rows are split into ``LANES`` lanes by
invoice number, and a lane is sent by the holder of its lease only
(``customer-mail:<lane>``), so several senders share the queue and never send
one email twice. A sender claims a batch of its lane's due rows in the
transaction that takes the lane, and renews the lane's lease with every mark;
whoever takes a lane puts back what its earlier holder left in 'sending' (dead,
or gone without marking them). Paced sending is one sender at a time, the
holder of the ``customer-mail`` lease, so ``mail_rate`` is the whole system's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from worker.state import leases
from worker.state.files import now_iso
from worker.state.store import Connection, Row, Store

#: The paced sender's lease: one at a time, system-wide.
LEASE = "customer-mail"
#: Lanes of the queue. A sender takes one lane for one batch, then the next free one:
#: enough lanes that senders seldom meet, and that the last lanes to drain leave little
#: for one sender alone.
LANES = 16
#: A lane is every LANES-th run of BLOCK consecutive invoice numbers, not every
#: LANES-th number: rows are stored in number order, several to a page, so a batch
#: of 500 then changes tens of pages, not 500, at its claim and again at its mark.
BLOCK = 64
#: The lane of a row, in SQL; its parameters are ``(BLOCK, LANES)``.
LANE_OF = "(invoice_number / ?) % ?"
#: Longer than one SMTP exchange may take (transport TIMEOUT), and than writing a
#: batch of ``.eml`` files: only a dead or stuck holder lets it lapse.
LEASE_SECONDS = 120.0

COLUMNS = (
    "invoice_number, file_id, customer_email, customer_name, language, amount, currency,"
    " expires_at, order_description, payment_link_url, email_attempts, email_first_at"
)
#: One outcome of a claimed row: (invoice number, state, error, next attempt at).
Outcome = tuple[int, str, str | None, float]


def lane_of(number: int) -> int:
    """The lane of invoice ``number``, as :data:`LANE_OF` computes it."""
    return number // BLOCK % LANES


def lane_lease(lane: int) -> str:
    return f"{LEASE}:{lane}"


def _put_back(conn: Connection, lane: int, not_before: float | None) -> None:
    """The lane's claimed rows not attempted: back to pending, the claim's attempt undone.
    Only the lane's holder claims its rows, so none of them is in flight elsewhere."""
    conn.execute(
        "UPDATE invoices SET email_state = 'pending', email_attempts = email_attempts - 1,"
        " email_next_at = CASE WHEN email_next_at > ? THEN email_next_at ELSE ? END"
        f" WHERE email_state = 'sending' AND {LANE_OF} = ?",
        (not_before or 0, not_before or 0, BLOCK, LANES, lane),
    )


def take_pacer(store: Store, owner: str) -> bool:
    """Become the one paced sender; False while another live one is."""
    with store.atomic() as conn:
        return leases.take_named(conn, LEASE, owner, LEASE_SECONDS)


def release_pacer(store: Store, owner: str) -> None:
    with store.atomic() as conn:
        leases.release_named(conn, LEASE, owner)


def claim(store: Store, lane: int, owner: str, limit: int) -> list[Row] | None:
    """Take ``lane`` and claim up to ``limit`` of its due emails, earliest due first;
    None while another live sender holds the lane. ``email_attempts`` is read as it
    was before this claim. The caller releases the lane (:func:`release`)."""
    now = time.time()
    with store.atomic() as conn:
        if not leases.take_named(conn, lane_lease(lane), owner, LEASE_SECONDS):
            return None
        _put_back(conn, lane, None)
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM invoices WHERE email_state = 'pending'"
            f" AND email_next_at <= ? AND {LANE_OF} = ? ORDER BY email_next_at LIMIT ?",
            (now, BLOCK, LANES, lane, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE invoices SET email_state = 'sending', email_attempts = email_attempts + 1,"
            " email_first_at = coalesce(email_first_at, ?) WHERE invoice_number = ?",
            [(now, r["invoice_number"]) for r in rows],
        )
    return list(rows)


def release(store: Store, lane: int, owner: str, not_before: float | None = None) -> None:
    """Let go of ``lane``; what is still claimed in it is due again, not before
    ``not_before``."""
    with store.atomic() as conn:
        if leases.release_named(conn, lane_lease(lane), owner):
            _put_back(conn, lane, not_before)


def mark(store: Store, lane: int, owner: str, outcomes: Iterable[Outcome]) -> bool:
    """Record outcomes and renew the lane's lease together; False when it was lost."""
    stamp = now_iso()
    with store.atomic() as conn:
        conn.executemany(
            "UPDATE invoices SET email_state = ?, email_error = ?, email_next_at = ?,"
            " email_sent_at = CASE WHEN ? = 'sent' THEN ? END, updated_at = ?"
            " WHERE invoice_number = ?",
            [(state, error, at, state, stamp, stamp, n) for n, state, error, at in outcomes],
        )
        return leases.renew_named(conn, lane_lease(lane), owner, LEASE_SECONDS)


def hold_queue(store: Store, until: float) -> None:
    """The server is down: every due email waits, not just the one that found out."""
    with store.atomic() as conn:
        conn.execute(
            "UPDATE invoices SET email_next_at = ? WHERE email_state = 'pending'"
            " AND email_next_at < ?",
            (until, until),
        )


def due(store: Store) -> bool:
    """Whether a sender should run: emails are due, or a sender gone left some claimed."""
    if store.one(
        "SELECT 1 FROM invoices WHERE email_state = 'pending' AND email_next_at <= ? LIMIT 1",
        (time.time(),),
    ):
        return True
    lanes = store.all(
        f"SELECT DISTINCT {LANE_OF} AS lane FROM invoices WHERE email_state = 'sending'",
        (BLOCK, LANES),
    )
    return any(leases.named_is_free(store, lane_lease(int(r["lane"]))) for r in lanes)


def due_more_than(store: Store, count: int) -> bool:
    """Whether more than ``count`` emails are due now (another sender would help)."""
    return bool(
        store.value(
            "SELECT count(*) FROM (SELECT 1 FROM invoices WHERE email_state = 'pending'"
            " AND email_next_at <= ? LIMIT ?) AS due",
            (time.time(), count + 1),
        )
        > count
    )


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
        "SELECT count(CASE WHEN email_state = 'sent' THEN 1 END) AS sent,"
        " count(CASE WHEN email_state = 'failed' THEN 1 END) AS failed"
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
