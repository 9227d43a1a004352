"""Thin dramatiq actors over the pipeline. Messages carry ids, never file contents.

Import through ``worker.broker.install`` (the broker must exist first); each
process then calls :func:`bind` with the runtime its jobs use.
"""

from __future__ import annotations

import logging

import dramatiq

from notifications import outbox, webhook
from notifications.transport import from_url
from worker import invoice_mail, log, pipeline
from worker.errors import LeaseHeld

_runtime: pipeline.Runtime | None = None
HOUR_MS = 3_600_000


def bind(runtime: pipeline.Runtime) -> None:
    global _runtime
    _runtime = runtime
    runtime.kick_mail = _kick_mail
    if runtime.settings.merchant_webhook_url:
        runtime.kick_webhooks = _kick_webhooks
    runtime.kick_invoice_mail = _kick_invoice_mail


def _kick_mail() -> None:
    # Best effort: the email is already recorded; the reconciler kicks again later.
    try:
        deliver_mail.send()
    except Exception as exc:
        log.event("mail.kick_failed", logging.WARNING, error=str(exc))


def _kick_webhooks() -> None:
    # Best effort, like mail: the webhook is recorded with its payment.
    try:
        deliver_webhooks.send()
    except Exception as exc:
        log.event("webhook.kick_failed", logging.WARNING, error=str(exc))


def _kick_invoice_mail() -> None:
    # Best effort too: the invoices' email_state is the record; the reconciler kicks again.
    try:
        deliver_invoice_mail.send()
    except Exception as exc:
        log.event("mail.kick_failed", logging.WARNING, error=str(exc))


def runtime() -> pipeline.Runtime:
    if _runtime is None:
        raise RuntimeError("worker.actors.bind() was not called in this process")
    return _runtime


@dramatiq.actor(
    queue_name="files",
    max_retries=20,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=6 * HOUR_MS,
)
def advance(file_id: int) -> None:
    """Take a file as far through its stages as it can go now."""
    try:
        pipeline.advance(runtime(), file_id)
    except LeaseHeld as why:
        # Not a failure: the run holding the lease finishes the file.
        log.event("file.lease_held", file_id=file_id, detail=str(why))


@dramatiq.actor(queue_name="mail", max_retries=0, time_limit=HOUR_MS)
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
        tried = webhook.deliver_due(rt.store, endpoint)
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


@dramatiq.actor(queue_name="customer-mail", max_retries=0, time_limit=HOUR_MS)
def deliver_invoice_mail() -> None:
    """Send the customers' invoice emails that are due, paced; one sender at a time."""
    rt = runtime()
    transport = from_url(rt.settings.smtp_url, rt.settings.mail)
    try:
        run = invoice_mail.deliver(rt.store, transport, rt.settings)
    finally:
        transport.close()
    if run is None:
        return
    if run.reports:
        rt.kick_mail()
    if run.more:
        deliver_invoice_mail.send()


ALL = (advance, deliver_mail, deliver_webhooks, deliver_invoice_mail)
