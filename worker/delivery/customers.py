"""Customer invoice emails: drained from ``invoices`` in batches, by several senders.

Each invoice row is its own outbox entry: ``email_state`` goes pending ->
sending (claimed) -> sent or failed. The queue is split into lanes
(``worker.state.mail``): a sender takes a free lane with a batch of its due
rows, sends them, records the outcomes and lets the lane go, then takes the
next free one. Senders in several processes therefore share the work, and
none sends an email another has claimed. Each process runs one sender at a
time: a second would only share its interpreter's lock.

``.eml`` files are written as fast as the disk takes them, never paced; a
batch is made durable at once (one sync) and then recorded sent in one
transaction. A crash before that record writes the batch again, replacing the
same files: still one file per invoice. Over SMTP each email is recorded as
soon as the server took it: a crash between the two sends that one email
twice (with the same Message-ID), never loses one. With ``mail_rate`` above
0, SMTP sending is paced, by one sender at a time (the ``customer-mail``
lease), so the rate is the whole system's; unpaced, senders use one
connection each.

A server that is down, or refuses the sender, holds the whole queue back with
the emails' backoff (2 s, 4 s ... up to 5 minutes), without limit. A 4xx for
one recipient backs off that invoice alone and is given up after
``mail_retry_hours``; a 5xx for one recipient fails it at once. Failures are
reported to the administrators once per file, when none of its emails is still
open. The queue's SQL and the leases are in ``worker.state.mail``.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notifications import reports
from notifications.customers import Invoice, Merchant, invoice_wire
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

#: The paced sender's lease (``worker.state.mail``): one paced sender, system-wide.
LEASE = mail.LEASE
#: A batch of ``.eml`` files is one sync and one transaction: large, so that both are
#: a small part of the batch's time.
FILE_BATCH = 500
#: Over SMTP each email is recorded on its own; the batch is just the claim.
SMTP_BATCH = 100
#: One run is bounded so that a worker asked to stop waits little; the run
#: that stops with work left asks for the next at once.
RUN_SECONDS = 20.0
#: A sender whose lanes are all held by others waits this long before it looks again.
IDLE_SECONDS = 0.02
PROGRESS_EVERY = 5000
PROGRESS_SECONDS = 10.0
REPORT_KIND = "customer-emails"

#: One sender per process (see the module's docstring).
_sending_here = threading.Lock()


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


@dataclass
class _Sender:
    store: Store
    transport: Transport
    merchant: Merchant
    owner: str
    give_up_after: float
    pacer: Pacer
    run: Run

    def attempt(self, row: Row) -> tuple[mail.Outcome, float | None]:
        """Send one invoice's email: its outcome, and when the whole queue may go on
        (the server is down) or None."""
        number = int(row["invoice_number"])
        run = self.run
        # The row was read before its claim counted this try.
        retry_at = time.time() + backoff(row["email_attempts"] + 1, MAX_BACKOFF)
        try:
            msg = invoice_wire(self.merchant, Invoice.from_row(row))
            self.pacer.wait()
            self.transport.write(f"invoice-{number}", msg)
        except ValueError as exc:
            # Not one plain address: no server will ever take it.
            run.failed += 1
            return (number, "failed", f"not sendable: {exc}", 0), None
        except PermanentDeliveryError as exc:
            run.failed += 1
            return (number, "failed", str(exc), 0), None
        except RecipientDeferred as exc:
            first = row["email_first_at"]
            if (time.time() - first if first else 0.0) >= self.give_up_after:
                run.failed += 1
                error = f"still deferred after {self.give_up_after / 3600:g} h: {exc}"
                return (number, "failed", error, 0), None
            run.deferred += 1
            return (number, "pending", str(exc), retry_at), None
        except DeliveryError as exc:
            _log_deferred(number, exc, retry_at)
            run.deferred += 1
            return (number, "pending", str(exc), retry_at), retry_at
        run.sent += 1
        return (number, "sent", None, 0), None

    def batch(self, lane: int, rows: list[Row]) -> tuple[bool, float | None]:
        """Send a claimed batch of ``lane``: (lane still held, hold-the-queue-until)."""
        per_email = not self.transport.repeat_replaces
        outcomes: list[mail.Outcome] = []
        held, hold = True, None
        for row in rows:
            outcome, hold = self.attempt(row)
            outcomes.append(outcome)
            self.run.progress()
            if per_email:
                held = mail.mark(self.store, lane, self.owner, outcomes)
                outcomes = []
            if hold or not held:
                break
        if outcomes:
            recorded, synced = self._record(lane, outcomes)
            held, hold = held and recorded, hold or synced
        return held, hold

    def _record(self, lane: int, outcomes: list[mail.Outcome]) -> tuple[bool, float | None]:
        """A batch of files: durable first, then recorded in one transaction. Returns
        (lane still held, hold-the-queue-until when the files could not be written)."""
        hold = None
        try:
            self.transport.flush()
        except DeliveryError as exc:
            # None of the batch is known to be on disk: all of it is tried again, after
            # the backoff, and the queue waits as for a server that is down.
            hold = time.time() + backoff(1, MAX_BACKOFF)
            _log_deferred(outcomes[0][0], exc, hold)
            sent = sum(1 for o in outcomes if o[1] == "sent")
            self.run.sent -= sent
            self.run.deferred += sent
            outcomes = [
                (n, "pending", str(exc), hold) if state == "sent" else (n, state, e, at)
                for n, state, e, at in outcomes
            ]
        return mail.mark(self.store, lane, self.owner, outcomes), hold


def _log_deferred(number: int, exc: Exception, retry_at: float) -> None:
    log.event(
        "mail.invoices.deferred",
        logging.WARNING,
        invoice_number=number,
        error=str(exc),
        retry_in_s=round(retry_at - time.time()),
    )


def deliver(
    store: Store,
    transport: Transport,
    settings: Settings,
    *,
    budget: float = RUN_SECONDS,
    on_start: Callable[[], None] | None = None,
) -> Run | None:
    """Send due customer emails for up to ``budget`` seconds; None when this process
    already runs a sender, or another paced sender runs (either sends these too).
    ``on_start`` is called once this run is sending (to ask for more senders)."""
    if not _sending_here.acquire(blocking=False):
        return None
    try:
        owner = lease_owner()
        paced = transport.paced and settings.mail_rate > 0
        if paced and not mail.take_pacer(store, owner):
            return None
        try:
            if on_start is not None and not paced:
                on_start()
            run = _drain(store, transport, settings, owner, budget)
        finally:
            if paced:
                mail.release_pacer(store, owner)
    finally:
        _sending_here.release()
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


def _drain(
    store: Store, transport: Transport, settings: Settings, owner: str, budget: float
) -> Run:
    """Lane after lane, a batch from each free one, until none has due emails."""
    run = Run()
    sender = _Sender(
        store=store,
        transport=transport,
        merchant=Merchant(name=settings.merchant_name, sender=settings.mail_from),
        owner=owner,
        give_up_after=settings.mail_retry_hours * 3600,
        pacer=Pacer(settings.mail_rate if transport.paced else 0),
        run=run,
    )
    size = FILE_BATCH if transport.repeat_replaces else SMTP_BATCH
    deadline = time.monotonic() + budget
    # Senders start at different lanes, so they seldom ask for the same one.
    lane = random.randrange(mail.LANES)
    empty = 0
    while True:
        rows = mail.claim(store, lane, owner, size)
        hold = None
        if rows:
            try:
                _, hold = sender.batch(lane, rows)
            finally:
                mail.release(store, lane, owner, hold)
            if hold:
                mail.hold_queue(store, hold)
                return run
            empty = 0
        else:
            if rows is not None:
                mail.release(store, lane, owner)
            empty += 1
        if time.monotonic() >= deadline:
            run.more = mail.due(store)
            return run
        if empty >= mail.LANES:
            # A whole round found nothing free to send: done, unless a lane another
            # sender holds still has some (it may hold it for one batch only).
            if not mail.due(store):
                return run
            time.sleep(IDLE_SECONDS)
            empty = 0
        lane = (lane + 1) % mail.LANES


def due(store: Store) -> bool:
    """Whether a sender should run: emails are due, or a sender gone left some claimed."""
    return mail.due(store)


def worth_another(store: Store) -> bool:
    """Whether a second sender would help: more than a batch of emails is due."""
    return mail.due_more_than(store, FILE_BATCH)


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
