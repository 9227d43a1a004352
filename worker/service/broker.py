"""The broker: imported, and installed, before any actor.

``install`` builds the RedisBroker for a URL and makes it dramatiq's global
broker; ``worker.actors`` is imported only after that, and is re-bound if a
process installs a second broker (the test suite does).
"""

from __future__ import annotations

import importlib
import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker

#: A message reaches an idle worker after about a third of this (ms); the
#: default of 1000 puts ~300 ms on every drop-to-result.
WORKER_TIMEOUT_MS = 100
#: A silent worker's messages are handed to another after this (ms).
HEARTBEAT_TIMEOUT_MS = 30_000


def install(url: str, *, namespace: str = "invoice-worker") -> RedisBroker:
    broker = RedisBroker(url=url, namespace=namespace, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS)
    dramatiq.set_broker(broker)
    if "worker.service.actors" in sys.modules:
        actors = sys.modules["worker.service.actors"]
        for actor in actors.ALL:
            actor.broker = broker
            broker.declare_actor(actor)
    else:
        importlib.import_module("worker.service.actors")
    return broker


def worker(broker: RedisBroker, threads: int) -> dramatiq.Worker:
    return dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
