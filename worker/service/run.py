"""The processes: ``run`` (watcher and workers), ``run --once``, ``watch`` and ``worker``.

Each builds its parts from the settings, in order: folders, state, Redis,
broker, actors; and stops them in reverse on Ctrl-C or SIGTERM, letting
in-flight jobs finish (what does not finish is handed back by its lease and
picked up at the next start).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import dramatiq.errors
import redis.exceptions
from dramatiq.brokers.redis import RedisBroker

from worker import log, state
from worker.delivery import customers as invoice_mail
from worker.delivery import outbox, webhooks
from worker.delivery.status import StatusWriter
from worker.intake.watcher import Watcher
from worker.kinds import KINDS
from worker.pipeline import groups
from worker.pipeline.runtime import Runtime
from worker.service import broker as broker_module
from worker.service import metrics, processes
from worker.service import redis as redis_server
from worker.service.signals import Stopper
from worker.settings import Settings
from worker.state import Store, files

STOP_TIMEOUT_MS = 30_000
#: How often ``run --once`` counts what is left while only emails are (see ``_serve``).
MAIL_CHECK_SECONDS = 1.0
#: What starting the parts raises when the Redis being joined has just gone away.
STARTUP_ERRORS = (redis.exceptions.ConnectionError, dramatiq.errors.ConnectionFailed)


@dataclass
class Parts:
    settings: Settings
    store: Store
    redis: redis_server.RedisServer
    broker: RedisBroker
    runtime: Runtime


@contextlib.contextmanager
def parts(settings: Settings) -> Iterator[Parts]:
    settings.ensure_folders()
    # A database that is not up yet (a host booting with it) is waited for, logged.
    store = state.connect(settings, wait=None)
    redis = redis_server.start(settings.redis_url, settings.var)
    try:
        broker = broker_module.install(redis.url)
        from worker.service import actors  # after install: actors bind to that broker

        runtime = Runtime(settings=settings, store=store, kinds=KINDS)
        actors.bind(runtime)
        log.event(
            "worker.configured",
            home=settings.home,
            redis=log.redact_url(redis.url) if settings.redis_url else "embedded",
            state=log.redact_url(settings.database_url) or settings.state_db,
            smtp=log.redact_url(settings.smtp_url) or f"eml files in {settings.mail}",
        )
        yield Parts(settings, store, redis, broker, runtime)
        broker.close()
    finally:
        redis.stop()


def enqueuer(store: Store, workers: int = 1) -> Callable[[list[int]], None]:
    """Sends each file's job: small files in groups (see ``worker.groups``), spread over
    ``workers`` (threads running jobs, all processes together)."""
    from worker.service import actors

    def enqueue(file_ids: list[int]) -> None:
        alone, together = groups.split(files.sizes(store, file_ids), workers)
        for file_id in alone:
            actors.advance.send(file_id)
        for group in together:
            actors.advance_many.send(group)
        files.mark_enqueued(store, file_ids)

    return enqueue


def workers(settings: Settings) -> int:
    return processes.count(settings) * settings.worker_threads


def kick_mail_if_due(store: Store) -> None:
    from worker.service import actors

    if outbox.due(store):
        actors.deliver_mail.send()
    if invoice_mail.due(store):
        actors.deliver_invoice_mail.send()


def kick_webhooks_if_due(store: Store, settings: Settings) -> None:
    from worker.service import actors

    if settings.merchant_webhook_url and webhooks.due(store):
        actors.deliver_webhooks.send()


def run(
    settings: Settings,
    *,
    once: bool = False,
    watch: bool = True,
    work: bool = True,
    mail_timeout: float = 60.0,
    children: bool = True,
) -> int:
    """The foreground process. ``once``: drain the inbox, then exit 0. ``children``:
    start the other ``worker_processes`` too (they pass False)."""
    # The Stopper first: a signal while the parts start (Redis, store) stops cleanly too.
    with Stopper() as stopper, contextlib.ExitStack() as stack:
        if stopper.event.is_set():
            # Stopped before it began (a signal that waited while this process started).
            log.event("worker.stopped")
            return 0
        try:
            started = stack.enter_context(parts(settings))
        except STARTUP_ERRORS:
            if not stopper.event.is_set():
                raise
            # Stopped while starting, and the Redis it was joining went first: nothing
            # was taken from the queue yet, so there is nothing to hand back.
            log.event("worker.stopped", while_starting=True)
            return 0
        stack.enter_context(
            metrics.serving(settings, started.store, started.broker, started.redis.url)
        )
        _serve(
            started,
            stopper,
            once=once,
            watch=watch,
            work=work,
            mail_timeout=mail_timeout,
            children=children,
        )
    return 0


def _serve(
    p: Parts,
    stopper: Stopper,
    *,
    once: bool,
    watch: bool,
    work: bool,
    mail_timeout: float,
    children: bool,
) -> None:
    """The main loop, until stopped (or, ``once``, until the inbox is drained)."""
    settings = p.settings
    worker = None
    extra: list[BaseProcess] = []
    if work:
        worker = broker_module.worker(p.broker, settings.worker_threads)
        worker.start()
    enqueue = enqueuer(p.store, workers(settings))
    watcher = Watcher(settings, p.store, enqueue) if watch else None
    # Beside the watcher: it lands files in inbox/, whose orphaned claims the watcher's
    # first reconcile registers before the poller looks for them.
    poller = None
    if watch and settings.sftp_url:
        # Imported here: asyncssh and its crypto cost every process 15 MB otherwise.
        from worker.intake.sftp import SftpPoller

        poller = SftpPoller(settings, p.store, enqueue)
    # Beside the watcher too: one process of a deployment writes them (a named lease).
    status_writer = StatusWriter(settings, p.store) if watch else None
    try:
        if work and children and not stopper.event.is_set():
            extra = processes.start(settings, p.redis.url, worker_process)
        if watcher:
            watcher.start()
        if poller and once:
            poller.fetch_once()
        elif poller:
            poller.start()
        kick_mail_if_due(p.store)
        kick_webhooks_if_due(p.store, settings)
        # --once waits for emails while they move; mail_timeout is how long it
        # waits for a mail server that takes none (it is down or refuses).
        idle_since: float | None = None
        left = -1
        check_at = 0.0
        while not stopper.event.is_set():
            reconciled = watcher.step() if watcher else False
            if status_writer and not once:
                status_writer.step()
            if reconciled:
                kick_mail_if_due(p.store)
                kick_webhooks_if_due(p.store, settings)
            if once and watcher and time.monotonic() >= check_at:
                done = _drained(p, watcher)
                # While only emails are left, they are counted once a second, not at
                # every tick: a count takes about 1 ms per 20,000 open emails, so with
                # a million open, counting every 50 ms took a core from the senders.
                check_at = time.monotonic() + (MAIL_CHECK_SECONDS if done == "mail" else 0)
                now_left = _mail_left(p.store, settings) if done == "mail" else -1
                moving = now_left != left
                left = now_left
                idle_since = None if done != "mail" or moving else idle_since or time.monotonic()
                if done == "all" or (idle_since and time.monotonic() - idle_since > mail_timeout):
                    if done != "all":
                        log.event(
                            "run.mail_pending",
                            pending=outbox.pending(p.store),
                            webhooks=webhooks.pending(p.store),
                            customer_pending=invoice_mail.open_count(p.store),
                        )
                    break
            if watcher:
                watcher.idle()
            else:
                stopper.event.wait(0.05)
        if status_writer and once and not stopper.event.is_set():
            # After the inbox is drained, before the upload: the file goes with the results.
            status_writer.step(now=True)
        if poller and once and not stopper.event.is_set():
            poller.upload_once()
    finally:
        if poller:
            poller.stop()
        if watcher:
            watcher.stop()
        processes.stop(extra, STOP_TIMEOUT_MS / 1000)
        if worker:
            worker.stop(timeout=STOP_TIMEOUT_MS)
        log.event("worker.stopped")


def _drained(p: Parts, watcher: Watcher) -> str | None:
    """ "all" when nothing is left, "mail" when only emails (or webhooks) are, else None."""
    if watcher.pending() or files.unfinished(p.store):
        return None
    watcher.scan()
    if watcher.pending():
        return None
    return "mail" if _mail_left(p.store, p.settings) else "all"


def _mail_left(store: Store, settings: Settings) -> int:
    """Emails and merchant webhooks still to go."""
    hooks = webhooks.pending(store) if settings.merchant_webhook_url else 0
    return outbox.pending(store) + invoice_mail.open_count(store) + hooks


def worker_process(settings: Settings, level: str) -> None:
    """Where a process started by ``processes.start`` begins: jobs only, no watcher."""
    processes.child_setup(settings, level)
    run(settings, watch=False, work=True, children=False)
