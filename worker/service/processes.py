"""More worker processes: a job holds one interpreter's GIL, so threads alone keep a
burst of small files on one core. ``run`` and ``worker`` start ``worker_processes - 1``
more processes that run jobs only, as ``invoice-worker worker`` does.

Each gets the parent's resolved settings (pickled by ``multiprocessing``'s spawn, so
a test's or a config file's settings are the same there) and joins the same Redis.
A child stops as ``worker`` does on SIGTERM: jobs in flight finish first. If the parent
dies (kill -9), its children stop the same way, so none are left behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from worker import log
from worker.settings import Settings

#: Used when ``worker_processes`` is 0: one process a core, up to this many.
AUTO_MAX = 4


def count(settings: Settings) -> int:
    """How many processes run jobs, this one included."""
    if settings.worker_processes > 0:
        return settings.worker_processes
    return max(1, min(os.cpu_count() or 1, AUTO_MAX))


def start(settings: Settings) -> list[BaseProcess]:
    """Start the extra worker processes; returns them for :func:`stop`."""
    context = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    children: list[BaseProcess] = []
    for n in range(1, count(settings)):
        child = context.Process(target=_main, args=(settings, level), name=f"worker-{n}")
        child.start()
        children.append(child)
    if children:
        log.event(
            "worker.processes", started=len(children), pids=",".join(str(c.pid) for c in children)
        )
    return children


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


def _main(settings: Settings, level: str) -> None:
    from worker.service import run as service

    log.setup(settings.log_format, level)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_with, args=(parent,), daemon=True).start()
    service.run(settings, watch=False, work=True, children=False)


def _stop_with(parent: BaseProcess) -> None:
    wait([parent.sentinel])
    log.event("worker.parent_gone", logging.WARNING, parent=parent.pid)
    # The same path as a SIGTERM from a process manager: in-flight jobs finish.
    os.kill(os.getpid(), signal.SIGTERM)
