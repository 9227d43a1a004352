"""Thin dramatiq actors over the pipeline. Messages carry ids, never file contents.

Import through ``worker.broker.install`` (the broker must exist first); each
process then calls :func:`bind` with the runtime its jobs use.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq

from notifications import webhook
from notifications.transport import from_url
from worker import log
from worker.delivery import customers as invoice_mail
from worker.delivery import outbox, webhooks
from worker.errors import LeaseHeld
from worker.pipeline import groups
from worker.pipeline import stages as pipeline
from worker.pipeline.runtime import Runtime

_runtime: Runtime | None = None
HOUR_MS = 3_600_000
#: A worker takes a file's job before an email delivery whenever it holds both (dramatiq
#: runs the lowest number first): in a burst the ERP's results come first, and the
#: emails, already recorded, follow. The file jobs have the default, 0.
MAIL_PRIORITY = 100
#: A file's job (alone or in a group): retried with backoff, for up to six hours a run.
FILE_JOBS: dict[str, Any] = {
    "queue_name": "files",
    "max_retries": 20,
    "min_backoff": 500,
    "max_backoff": 60_000,
    "time_limit": 6 * HOUR_MS,
}


#: At most one kick per actor per this many seconds from a process: a burst of small
#: files would otherwise send a message per file to an actor whose one run sends them all.
KICK_WINDOW = 0.25


class Kick:
    """Asks ``actor`` (no arguments) to run soon, coalescing calls from this process.

    A call made while a kick is waiting to be sent is dropped: that kick is sent, and
    its run starts, after this call, so the run sees what the caller recorded. Otherwise
    a kick is sent now, or at the end of the window when the last one went within it
    (from a timer here, not a delayed message: those sit in a worker's memory, and a
    worker stopping as Redis does cannot hand them back cleanly). Best effort: what it
    is about is already recorded, and the reconciler kicks again later.
    """

    def __init__(self, actor: dramatiq.Actor[[], None], window: float = KICK_WINDOW) -> None:
        self.actor = actor
        self.window = window
        self._lock = threading.Lock()
        self._sent_at = float("-inf")
        self._waiting = False

    def __call__(self) -> None:
        with self._lock:
            if self._waiting:
                return
            delay = self._sent_at + self.window - time.monotonic()
            if delay > 0:
                self._waiting = True
                timer = threading.Timer(delay, self._send)
                timer.daemon = True
                timer.start()
                return
            self._sent_at = time.monotonic()
        self._send_now()

    def _send(self) -> None:
        with self._lock:
            self._waiting = False
            self._sent_at = time.monotonic()
        self._send_now()

    def _send_now(self) -> None:
        try:
            self.actor.send()
        except Exception as exc:
            log.event(
                "actor.kick_failed", logging.WARNING, actor=self.actor.actor_name, error=str(exc)
            )


def bind(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime
    runtime.kick_mail = Kick(deliver_mail)
    if runtime.settings.merchant_webhook_url:
        runtime.kick_webhooks = Kick(deliver_webhooks)
    runtime.kick_invoice_mail = Kick(deliver_invoice_mail)


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker.actors.bind() was not called in this process")
    return _runtime


@dramatiq.actor(**FILE_JOBS)
def advance(file_id: int) -> None:
    """Take a file as far through its stages as it can go now."""
    try:
        pipeline.advance(runtime(), file_id)
    except LeaseHeld as why:
        # Not a failure: the run holding the lease finishes the file.
        log.event("file.lease_held", file_id=file_id, detail=str(why))


@dramatiq.actor(**FILE_JOBS)
def advance_many(file_ids: list[int]) -> None:
    """Take small files as far as they can go now, validating them together."""
    groups.advance_many(runtime(), file_ids)


@dramatiq.actor(queue_name="mail", max_retries=0, time_limit=HOUR_MS, priority=MAIL_PRIORITY)
def deliver_mail() -> None:
    """Send every email that is due; the reconciler calls again for those deferred."""
    rt = runtime()
    transport = from_url(rt.settings.smtp_url, rt.settings.mail)
    try:
        while True:
            counts = outbox.deliver_due(rt.store, transport)
            if any(counts.values()):
                log.event("mail.delivered", **counts)
            if counts["deferred"] or not (counts["sent"] or counts["failed"]):
                return
    finally:
        transport.close()


@dramatiq.actor(queue_name="webhooks", max_retries=0, time_limit=HOUR_MS)
def deliver_webhooks() -> None:
    """POST every merchant webhook that is due; the reconciler calls again for those deferred."""
    rt = runtime()
    url, secret = rt.settings.merchant_webhook_url, rt.settings.merchant_webhook_secret
    if not url or not secret:
        return
    endpoint = webhook.Endpoint(url, secret)
    while True:
        tried = webhooks.deliver_due(rt.store, endpoint)
        for attempt in tried:
            if attempt.error is None:
                log.event(
                    "webhook.delivered",
                    invoice_number=attempt.invoice_number,
                    attempts=attempt.attempts,
                )
            else:
                log.event(
                    "webhook.deferred",
                    logging.WARNING,
                    invoice_number=attempt.invoice_number,
                    attempts=attempt.attempts,
                    retry_in=attempt.retry_in,
                    error=attempt.error,
                )
        if not tried or tried[-1].error is not None:
            return


#: How many times a message asking for one more sender may be passed on in search of
#: a process that has none running (a worker process takes the message about as often
#: as any other, busy or not).
SENDER_HOPS = 4


@dramatiq.actor(
    queue_name="customer-mail", max_retries=0, time_limit=HOUR_MS, priority=MAIL_PRIORITY
)
def deliver_invoice_mail(hops: int = SENDER_HOPS) -> None:
    """Send the customers' invoice emails that are due, one sender per process, as many
    processes as there is work for (paced over SMTP: one sender in all)."""
    rt = runtime()
    transport = from_url(rt.settings.smtp_url, rt.settings.mail)

    def ask_for_another() -> None:
        if invoice_mail.worth_another(rt.store):
            deliver_invoice_mail.send(SENDER_HOPS)

    try:
        run = invoice_mail.deliver(rt.store, transport, rt.settings, on_start=ask_for_another)
    finally:
        transport.close()
    if run is None:
        paced = transport.paced and rt.settings.mail_rate > 0
        if hops > 0 and not paced and invoice_mail.worth_another(rt.store):
            # This process already sends: pass the request on, for an idle one.
            deliver_invoice_mail.send(hops - 1)
        return
    if run.reports:
        rt.kick_mail()
    if run.more:
        deliver_invoice_mail.send()


ALL = (advance, advance_many, deliver_mail, deliver_webhooks, deliver_invoice_mail)
