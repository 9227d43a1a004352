"""More worker processes: a job holds one interpreter's GIL, so threads alone keep a
burst of small files on one core. ``run`` and ``worker`` start ``worker_processes - 1``
more processes that run jobs only, as ``invoice-worker worker`` does.

Each gets the parent's resolved settings (pickled by ``multiprocessing``'s spawn, so
a test's or a config file's settings are the same there) and joins the same Redis.
A child stops as ``worker`` does on SIGTERM: jobs in flight finish first. If the parent
dies (kill -9), its children stop the same way, so none are left behind. They start
with SIGINT and SIGTERM blocked (see ``worker.service.signals``), so a signal that
comes while one is still starting stops it cleanly too.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from worker import log
from worker.service import signals
from worker.settings import Settings
from worker.state import leases

#: Used when ``worker_processes`` is 0: one process a core, up to this many.
AUTO_MAX = 4


def count(settings: Settings) -> int:
    """How many processes run jobs, this one included."""
    if settings.worker_processes > 0:
        return settings.worker_processes
    return max(1, min(os.cpu_count() or 1, AUTO_MAX))


def start(
    settings: Settings, redis_url: str, entry: Callable[[Settings, str], None]
) -> list[BaseProcess]:
    """Start the extra worker processes at ``entry(settings, log level)``; returns them for
    :func:`stop`. They join this process's Redis at ``redis_url`` and never start or adopt
    one: one that outlived its parent's kill -9 would otherwise adopt the embedded server
    and stop it on its way out, under the next run that joined it."""
    settings = dataclasses.replace(settings, redis_url=redis_url)
    context = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    children: list[BaseProcess] = []
    if count(settings) > 1:
        # The tracker is spawned by the first child.start() otherwise, and it unblocks
        # SIGINT and SIGTERM after spawning itself: the children would start unblocked
        # (CPython does the same for the tracker itself, bpo-33613).
        resource_tracker.ensure_running()
    with signals.blocked():
        for n in range(1, count(settings)):
            own = numbered(settings, n)
            child = context.Process(target=entry, args=(own, level), name=f"worker-{n}")
            child.start()
            children.append(child)
    if children:
        log.event(
            "worker.processes", started=len(children), pids=",".join(str(c.pid) for c in children)
        )
    return children


def numbered(settings: Settings, n: int) -> Settings:
    """The settings of the ``n``-th extra process: its metrics on the ``n``-th port after
    ``metrics_port``, since processes on one host cannot share a port."""
    if not settings.metrics_port:
        return settings
    return dataclasses.replace(settings, metrics_port=settings.metrics_port + n)


def stop(children: list[BaseProcess], timeout: float) -> None:
    """SIGTERM each child, then wait for it (jobs in flight finish); kill what outlasts."""
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            log.event("worker.process_killed", logging.WARNING, pid=child.pid)
            child.kill()
            child.join()


def child_setup(settings: Settings, level: str) -> None:
    """A started process's first steps: its log, and stopping when its parent is gone."""
    log.setup(settings.log_format, level)
    leases.set_host(settings.host_name)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_with, args=(parent,), daemon=True).start()


def _stop_with(parent: BaseProcess) -> None:
    wait([parent.sentinel])
    log.event("worker.parent_gone", logging.WARNING, parent=parent.pid)
    # The same path as a SIGTERM from a process manager: in-flight jobs finish.
    os.kill(os.getpid(), signal.SIGTERM)
