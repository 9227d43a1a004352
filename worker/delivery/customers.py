"""Customer invoice emails: drained from ``invoices`` in batches, paced, on one connection.

Each invoice row is its own outbox entry: ``email_state`` goes pending ->
sending (claimed) -> sent or failed. One sender at a time holds the
``customer-mail`` lease in SQLite, so ``mail_rate`` is the rate of the whole
system however many workers run, and two workers never send the same email.
The holder renews the lease with every 'sent' mark; whoever takes the lease
next puts back what a dead holder left in 'sending'. A crash between the
server's acceptance and the 'sent' mark means that one email goes twice (with
the same Message-ID); never that one is lost.

A server that is down, or refuses the sender, holds the whole queue back with
exponential backoff, without limit. A 4xx for one recipient backs off that
invoice alone and is given up after ``mail_retry_hours``; a 5xx for one
recipient fails it at once. Failures are reported to the administrators once
per file, when none of its emails is still open.
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from notifications import reports
from notifications.customers import Invoice, Merchant, invoice_email
from notifications.pacing import Pacer
from notifications.transport import Transport
from worker import log
from worker.delivery import outbox
from worker.errors import DeliveryError, PermanentDeliveryError, RecipientDeferred
from worker.pipeline.results import formula_safe_text
from worker.settings import Settings
from worker.state import Store
from worker.state.files import now_iso
from worker.state.leases import lease_owner, owner_is_dead

LEASE = "customer-mail"
#: Longer than one SMTP exchange may take (transport TIMEOUT): the holder renews
#: it after every message, so only a dead or stuck holder lets it lapse.
LEASE_SECONDS = 120.0
BATCH = 100
#: One run is bounded so that a worker asked to stop waits little; the run
#: that stops with work left asks for the next at once.
RUN_SECONDS = 20.0
PROGRESS_EVERY = 500
PROGRESS_SECONDS = 10.0
MAX_BACKOFF = 300.0
REPORT_KIND = "customer-emails"

_COLUMNS = (
    "invoice_number, file_id, customer_email, customer_name, language, amount, currency,"
    " expires_at, order_description, payment_link_url, email_attempts, email_first_at"
)


@dataclass
class Run:
    """What one sender run did; ``more`` when it stopped with emails still due."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    reports: int = 0
    more: bool = False
    started: float = field(default_factory=time.monotonic)
    _logged_at: float = field(default_factory=time.monotonic)
    _logged_sent: int = 0

    @property
    def rate(self) -> float:
        return round(self.sent / max(time.monotonic() - self.started, 1e-6), 1)

    def progress(self) -> None:
        """One log line per PROGRESS_EVERY emails or PROGRESS_SECONDS, not one per email."""
        due = self.sent - self._logged_sent >= PROGRESS_EVERY
        if due or time.monotonic() - self._logged_at >= PROGRESS_SECONDS:
            log.event(
                "mail.invoices.progress",
                sent=self.sent,
                failed=self.failed,
                rate_per_s=self.rate,
            )
            self._logged_at, self._logged_sent = time.monotonic(), self.sent


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts, 1), MAX_BACKOFF))


# -- the lease ------------------------------------------------------------------


def take_lease(store: Store, owner: str) -> bool:
    """Become the one sender; False while another live sender is."""
    now = time.time()
    with store.atomic() as conn:
        held = conn.execute("SELECT owner, until FROM leases WHERE name = ?", (LEASE,)).fetchone()
        if held and held["until"] > now and not owner_is_dead(held["owner"]):
            return False
        conn.execute(
            "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) ON CONFLICT(name)"
            " DO UPDATE SET owner = excluded.owner, until = excluded.until",
            (LEASE, owner, now + LEASE_SECONDS),
        )
        # Only a lease holder claims; the one before us is gone, so are its claims.
        _put_back(conn, None)
    return True


def _renew(conn: sqlite3.Connection, owner: str) -> bool:
    cur = conn.execute(
        "UPDATE leases SET until = ? WHERE name = ? AND owner = ?",
        (time.time() + LEASE_SECONDS, LEASE, owner),
    )
    return cur.rowcount == 1


def _put_back(conn: sqlite3.Connection, not_before: float | None) -> None:
    """Claimed but not attempted: back to pending, the claim's attempt undone."""
    conn.execute(
        "UPDATE invoices SET email_state = 'pending', email_attempts = email_attempts - 1,"
        " email_next_at = max(email_next_at, ?) WHERE email_state = 'sending'",
        (not_before or 0,),
    )


def release_lease(store: Store, owner: str, not_before: float | None = None) -> None:
    with store.atomic() as conn:
        if conn.execute(
            "SELECT 1 FROM leases WHERE name = ? AND owner = ?", (LEASE, owner)
        ).fetchone():
            _put_back(conn, not_before)
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (LEASE, owner))


# -- claiming and marking ------------------------------------------------------------


def _claim(store: Store, owner: str, limit: int) -> list[sqlite3.Row]:
    now = time.time()
    with store.atomic() as conn:
        if not _renew(conn, owner):
            return []
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM invoices WHERE email_state = 'pending'"
            " AND email_next_at <= ? ORDER BY email_next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE invoices SET email_state = 'sending', email_attempts = email_attempts + 1,"
            " email_first_at = coalesce(email_first_at, ?) WHERE invoice_number = ?",
            [(now, r["invoice_number"]) for r in rows],
        )
    return rows


def _mark(
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
        return _renew(conn, owner)


def _hold_queue(store: Store, until: float) -> None:
    """The server is down: every due email waits, not just the one that found out."""
    with store.atomic() as conn:
        conn.execute(
            "UPDATE invoices SET email_next_at = ? WHERE email_state = 'pending'"
            " AND email_next_at < ?",
            (until, until),
        )


# -- sending -----------------------------------------------------------------------


def _send_one(
    store: Store,
    transport: Transport,
    merchant: Merchant,
    row: sqlite3.Row,
    owner: str,
    give_up_after: float,
    run: Run,
) -> tuple[bool, float | None]:
    """Send one invoice's email; returns (lease still held, hold-the-queue-until)."""
    number = int(row["invoice_number"])
    retry_at = time.time() + backoff(row["email_attempts"])
    try:
        transport.send(f"invoice-{number}", invoice_email(merchant, Invoice.from_row(row)))
    except ValueError as exc:
        # Not one plain address: no server will ever take it.
        run.failed += 1
        return _mark(store, owner, number, "failed", f"not sendable: {exc}"), None
    except PermanentDeliveryError as exc:
        run.failed += 1
        return _mark(store, owner, number, "failed", str(exc)), None
    except RecipientDeferred as exc:
        first = row["email_first_at"]
        if (time.time() - first if first else 0.0) >= give_up_after:
            run.failed += 1
            error = f"still deferred after {give_up_after / 3600:g} h: {exc}"
            return _mark(store, owner, number, "failed", error), None
        run.deferred += 1
        return _mark(store, owner, number, "pending", str(exc), retry_at), None
    except DeliveryError as exc:
        run.deferred += 1
        log.event(
            "mail.invoices.deferred",
            logging.WARNING,
            invoice_number=number,
            error=str(exc),
            retry_in_s=round(retry_at - time.time()),
        )
        return _mark(store, owner, number, "pending", str(exc), retry_at), retry_at
    run.sent += 1
    return _mark(store, owner, number, "sent", None), None


def deliver(
    store: Store, transport: Transport, settings: Settings, *, budget: float = RUN_SECONDS
) -> Run | None:
    """Send the due customer emails for up to ``budget`` seconds; None when another
    sender holds the lease (it will send these too)."""
    owner = lease_owner()
    if not take_lease(store, owner):
        return None
    run = Run()
    merchant = Merchant(name=settings.merchant_name, sender=settings.mail_from)
    pacer = Pacer(settings.mail_rate)
    deadline = time.monotonic() + budget
    give_up_after = settings.mail_retry_hours * 3600
    hold: float | None = None
    stop = False
    try:
        while not stop and (rows := _claim(store, owner, BATCH)):
            for row in rows:
                pacer.wait()
                held, hold = _send_one(store, transport, merchant, row, owner, give_up_after, run)
                run.progress()
                stop = bool(hold) or not held or time.monotonic() >= deadline
                if stop:
                    # Out of time with the lease still ours: the next run goes on at once.
                    run.more = held and not hold
                    break
        if hold:
            _hold_queue(store, hold)
    finally:
        release_lease(store, owner, hold)
    run.reports = report_failures(store, settings)
    if run.sent or run.failed or run.deferred:
        log.event(
            "mail.invoices.done",
            sent=run.sent,
            failed=run.failed,
            deferred=run.deferred,
            rate_per_s=run.rate,
            connections=getattr(transport, "connections", None),
            more=run.more,
        )
    return run


def due(store: Store) -> bool:
    """Whether a sender should run: emails are due, or a dead sender left some claimed."""
    now = time.time()
    if store.one(
        "SELECT 1 FROM invoices WHERE email_state = 'pending' AND email_next_at <= ? LIMIT 1",
        (now,),
    ):
        return True
    if not store.one("SELECT 1 FROM invoices WHERE email_state = 'sending' LIMIT 1"):
        return False
    held = store.one("SELECT owner, until FROM leases WHERE name = ?", (LEASE,))
    return held is None or held["until"] <= now or owner_is_dead(held["owner"])


def open_count(store: Store) -> int:
    """Customer emails not yet sent or failed (pending, backing off, or being sent)."""
    # Two counts, each answered by its partial index, rather than one table scan.
    return sum(
        int(store.all(f"SELECT count(*) AS n FROM invoices WHERE email_state = '{state}'")[0][0])
        for state in ("pending", "sending")
    )


# -- reporting failures --------------------------------------------------------------


def report_failures(store: Store, settings: Settings) -> int:
    """Record one admin report per file whose emails are all settled and some failed."""
    files = store.all(
        "SELECT DISTINCT i.file_id, f.name FROM invoices i JOIN files f ON f.id = i.file_id"
        " WHERE i.email_state = 'failed' AND NOT EXISTS (SELECT 1 FROM outbox o"
        " WHERE o.key = 'file:' || i.file_id || ':customer-emails')"
    )
    envelope = reports.Envelope(sender=settings.mail_from, admins=settings.admin_emails)
    recorded = 0
    for file in files:
        file_id = int(file.file_id)
        if store.one(
            "SELECT 1 FROM invoices WHERE file_id = ? AND email_state IN ('pending', 'sending')"
            " LIMIT 1",
            (file_id,),
        ):
            continue
        msg = _failure_report(store, envelope, {"id": file_id, "name": file.name})
        with store.atomic() as conn:
            outbox.record(conn, f"file:{file_id}:{REPORT_KIND}", REPORT_KIND, file_id, msg)
        log.event("mail.invoices.failures_reported", file_id=file_id, name=file.name)
        recorded += 1
    return recorded


def _failure_report(store: Store, envelope: reports.Envelope, file: dict[str, Any]) -> Any:
    counts = store.row(
        "SELECT sum(email_state = 'sent') AS sent, sum(email_state = 'failed') AS failed"
        " FROM invoices WHERE file_id = ?",
        (file.id,),
    )
    failures = store.all(
        "SELECT line_number, merchant_reference, invoice_number, customer_email, email_error"
        " FROM invoices WHERE file_id = ? AND email_state = 'failed' ORDER BY line_number",
        (file.id,),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        ("line_number", "merchant_reference", "invoice_number", "customer_email", "error")
    )
    for r in failures:
        writer.writerow(
            (
                r["line_number"],
                formula_safe_text(r["merchant_reference"] or ""),
                r["invoice_number"],
                formula_safe_text(r["customer_email"] or ""),
                formula_safe_text(r["email_error"] or ""),
            )
        )
    return reports.bounces(
        envelope,
        file,
        sent=int(counts["sent"] or 0),
        failed=int(counts["failed"] or 0),
        first_failures=[
            (r["line_number"], r["merchant_reference"], r["customer_email"], r["email_error"])
            for r in failures[: reports.FIRST_ERRORS]
        ],
        failures_csv=buffer.getvalue().encode("utf-8"),
    )
