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
the emails' backoff (2 s, 4 s ... up to 5 minutes), without limit. A 4xx for
one recipient backs off that invoice alone and is given up after
``mail_retry_hours``; a 5xx for one recipient fails it at once. Failures are
reported to the administrators once per file, when none of its emails is still
open. The queue's SQL and the sender's lease are in ``worker.state.mail``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from notifications import reports
from notifications.customers import Invoice, Merchant, invoice_email
from notifications.errors import DeliveryError, PermanentDeliveryError, RecipientDeferred
from notifications.pacing import Pacer
from notifications.transport import Transport
from worker import log
from worker.delivery.outbox import MAX_BACKOFF
from worker.pipeline.results import formula_safe_text
from worker.settings import Settings
from worker.state import Store, mail, outbox
from worker.state.leases import lease_owner
from worker.state.queue import backoff
from worker.state.store import Row

#: The sender's lease (``worker.state.mail``): one sender at a time, system-wide.
LEASE = mail.LEASE
BATCH = 100
#: One run is bounded so that a worker asked to stop waits little; the run
#: that stops with work left asks for the next at once.
RUN_SECONDS = 20.0
PROGRESS_EVERY = 500
PROGRESS_SECONDS = 10.0
REPORT_KIND = "customer-emails"


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


def take_lease(store: Store, owner: str) -> bool:
    """Become the one sender; False while another live sender is."""
    return mail.take_sender(store, owner)


def release_lease(store: Store, owner: str, not_before: float | None = None) -> None:
    mail.release_sender(store, owner, not_before)


# -- sending -----------------------------------------------------------------------


def _send_one(
    store: Store,
    transport: Transport,
    merchant: Merchant,
    row: Row,
    owner: str,
    give_up_after: float,
    run: Run,
) -> tuple[bool, float | None]:
    """Send one invoice's email; returns (lease still held, hold-the-queue-until)."""
    number = int(row["invoice_number"])
    # The row was read before its claim counted this try.
    retry_at = time.time() + backoff(row["email_attempts"] + 1, MAX_BACKOFF)
    try:
        transport.send(f"invoice-{number}", invoice_email(merchant, Invoice.from_row(row)))
    except ValueError as exc:
        # Not one plain address: no server will ever take it.
        run.failed += 1
        return mail.mark(store, owner, number, "failed", f"not sendable: {exc}"), None
    except PermanentDeliveryError as exc:
        run.failed += 1
        return mail.mark(store, owner, number, "failed", str(exc)), None
    except RecipientDeferred as exc:
        first = row["email_first_at"]
        if (time.time() - first if first else 0.0) >= give_up_after:
            run.failed += 1
            error = f"still deferred after {give_up_after / 3600:g} h: {exc}"
            return mail.mark(store, owner, number, "failed", error), None
        run.deferred += 1
        return mail.mark(store, owner, number, "pending", str(exc), retry_at), None
    except DeliveryError as exc:
        run.deferred += 1
        log.event(
            "mail.invoices.deferred",
            logging.WARNING,
            invoice_number=number,
            error=str(exc),
            retry_in_s=round(retry_at - time.time()),
        )
        return mail.mark(store, owner, number, "pending", str(exc), retry_at), retry_at
    run.sent += 1
    return mail.mark(store, owner, number, "sent", None), None


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
        while not stop and (rows := mail.claim(store, owner, BATCH)):
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
            mail.hold_queue(store, hold)
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
    return mail.due(store)


def open_count(store: Store) -> int:
    """Customer emails not yet sent or failed (pending, backing off, or being sent)."""
    return mail.open_count(store)


# -- reporting failures --------------------------------------------------------------


def report_failures(store: Store, settings: Settings) -> int:
    """Record one admin report per file whose emails are all settled and some failed."""
    envelope = reports.Envelope(sender=settings.mail_from, admins=settings.admin_emails)
    recorded = 0
    for file_id, name in mail.unreported_failures(store, REPORT_KIND):
        msg = _failure_report(store, envelope, {"id": file_id, "name": name})
        with store.atomic() as conn:
            outbox.record(conn, f"file:{file_id}:{REPORT_KIND}", REPORT_KIND, file_id, msg)
        log.event("mail.invoices.failures_reported", file_id=file_id, name=name)
        recorded += 1
    return recorded


def _failure_report(store: Store, envelope: reports.Envelope, file: dict[str, Any]) -> Any:
    sent, failed = mail.outcome_counts(store, file["id"])
    failures = mail.failures(store, file["id"])
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
        sent=sent,
        failed=failed,
        first_failures=[
            (r["line_number"], r["merchant_reference"], r["customer_email"], r["email_error"])
            for r in failures[: reports.FIRST_ERRORS]
        ],
        failures_csv=buffer.getvalue().encode("utf-8"),
    )
