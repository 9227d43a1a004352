"""Prometheus metrics at ``/metrics`` and a health check at ``/health``, when
``metrics_port`` is set.

Every number but the queue depth is read from the state database at scrape time
(:mod:`worker.state.metrics`), which all processes share: any process's
endpoint gives the whole system's numbers, the same across restarts. The queue
depth is read from Redis. ``/health`` is this process's own: 200 while its
broker and its database answer, else 503.

Ports: ``run`` (and ``worker``, ``watch``) serve on ``metrics_port``; the worker
processes ``run`` starts serve on ``metrics_port + 1``, ``+ 2`` ... (see
``worker.service.processes``). The host is ``metrics_host``, 127.0.0.1 unless set.

dramatiq's own Prometheus middleware is not used: it binds 0.0.0.0 unless an
environment variable says otherwise (Bogdanp/dramatiq#309), keeps its numbers in
a shared folder under /tmp, and counts messages of the processes it forked,
which are not this service's processes; nor would it know files, rows or emails.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from worker import log
from worker.errors import ConfigError
from worker.settings import Settings
from worker.state import FINAL_STATES, Store
from worker.state import metrics as queries

PREFIX = "invoice_worker"
#: A health check or a scrape waits this long for Redis, then calls it down.
REDIS_TIMEOUT = 2.0
#: A client that sends nothing is dropped after this long (one thread serves all).
REQUEST_TIMEOUT = 10.0


class StateCollector:
    """The system's numbers, read from the database (and Redis) at each scrape."""

    def __init__(self, store: Store, client: redis.Redis, namespace: str, queues: list[str]):
        self.store = store
        self.client = client
        self.namespace = namespace
        self.queues = queues
        #: Customer emails of files that are final and have none left to send: they
        #: never change, so each is counted once per process.
        self._settled: dict[int, dict[str, int]] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # Nothing to check at registration: the names are fixed and this registry's own.
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            yield from self._files()
            yield self._customer_and_admin_emails()
            yield self._webhooks()
            queue = self._queue_depth()
            if queue is not None:
                yield queue

    def _files(self) -> Iterator[Metric]:
        files = GaugeMetricFamily(
            f"{PREFIX}_files", "Files by kind and state.", labels=["kind", "state"]
        )
        valid = CounterMetricFamily(
            f"{PREFIX}_rows_valid", "Valid rows of files in a final state.", labels=["kind"]
        )
        rejected = CounterMetricFamily(
            f"{PREFIX}_rows_rejected", "Rejected rows of files in a final state.", labels=["kind"]
        )
        existing = CounterMetricFamily(
            f"{PREFIX}_rows_existing",
            "Rows of files in a final state answered with an existing invoice (EXISTS).",
            labels=["kind"],
        )
        created = CounterMetricFamily(
            f"{PREFIX}_invoices_created", "Invoices created, by the kind of file.", labels=["kind"]
        )
        finals: dict[str, Counter[str]] = {}
        for t in queries.file_totals(self.store):
            files.add_metric([t.kind, t.state], t.files)
            if t.state in FINAL_STATES:
                sums = finals.setdefault(t.kind, Counter())
                sums.update(
                    valid=t.valid, rejected=t.rejected, existing=t.existing, created=t.created
                )
        for kind, sums in sorted(finals.items()):
            valid.add_metric([kind], sums["valid"])
            rejected.add_metric([kind], sums["rejected"])
            existing.add_metric([kind], sums["existing"])
            created.add_metric([kind], sums["created"])
        yield from (files, valid, rejected, existing, created)
        oldest = queries.oldest_unfinished(self.store)
        age = 0.0
        if oldest is not None:
            received = calendar.timegm(time.strptime(oldest, "%Y-%m-%dT%H:%M:%SZ"))
            age = max(time.time() - received, 0.0)
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_unfinished_file_age_seconds",
            "Seconds since the oldest file still to be finished was received (0: none).",
            value=age,
        )

    def _customer_emails(self) -> Counter[str]:
        finals = queries.final_file_ids(self.store)
        open_ids = queries.file_ids(self.store) - self._settled.keys()
        counted = queries.customer_emails(self.store, open_ids)
        totals: Counter[str] = Counter()
        for file_id in open_ids:
            counts = counted.get(file_id, {})
            if file_id in finals and queries.settled(counts):
                self._settled[file_id] = counts
            totals.update(counts)
        for counts in self._settled.values():
            totals.update(counts)
        return totals

    def _customer_and_admin_emails(self) -> Metric:
        emails = GaugeMetricFamily(
            f"{PREFIX}_emails",
            "Emails by audience (customer: invoices; admin: reports) and state.",
            labels=["audience", "state"],
        )
        states = ("pending", "sending", "deferred", "sent", "failed")
        for audience, counts in (
            ("customer", self._customer_emails()),
            ("admin", Counter(queries.admin_emails(self.store))),
        ):
            for state in sorted(set(states) | set(counts)):
                if state != "sending" or audience == "customer":
                    emails.add_metric([audience, state], counts.get(state, 0))
        return emails

    def _webhooks(self) -> Metric:
        hooks = GaugeMetricFamily(
            f"{PREFIX}_webhooks", "Merchant webhook deliveries by state.", labels=["state"]
        )
        counts = queries.webhook_deliveries(self.store)
        for state in sorted({"pending", "sent", "failed"} | set(counts)):
            hooks.add_metric([state], counts.get(state, 0))
        return hooks

    def _queue_depth(self) -> Metric | None:
        """Messages enqueued and not yet acknowledged (waiting, delayed or being
        worked on), per dramatiq queue; None while Redis does not answer."""
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            for name in (queue, dq_name(queue)):
                pipe.hlen(f"{self.namespace}:{name}.msgs")
        try:
            lengths = pipe.execute()
        except redis.RedisError as exc:
            log.event("metrics.queue_unknown", error=type(exc).__name__)
            return None
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_messages", "Messages in a dramatiq queue.", labels=["queue"]
        )
        for index, queue in enumerate(self.queues):
            depth.add_metric([queue], lengths[2 * index] + lengths[2 * index + 1])
        return depth


class MetricsServer:
    """One HTTP server thread answering ``/metrics`` and ``/health``."""

    def __init__(self, settings: Settings, store: Store, broker: RedisBroker, redis_url: str):
        self.store = store
        self.client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        declared = broker.get_declared_queues()
        # A queue's delay and dead-letter queues are counted with it, not on their own.
        derived = {dq_name(q) for q in declared} | {xq_name(q) for q in declared}
        queues = sorted(declared - derived)
        self.registry = CollectorRegistry()
        self.registry.register(StateCollector(store, self.client, broker.namespace, queues))
        ProcessCollector(registry=self.registry)
        self.host = settings.metrics_host
        self.port = settings.metrics_port or 0
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def health(self) -> tuple[bool, dict[str, str]]:
        """Whether this process's broker and database answer, and each one's word.
        Only an error's class is given: its text may name hosts or paths."""
        checks: dict[str, str] = {}
        for name, probe in (("broker", self.client.ping), ("database", self._ping_db)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"down: {type(exc).__name__}"
        return all(v == "ok" for v in checks.values()), checks

    def _ping_db(self) -> None:
        queries.ping(self.store)

    def start(self) -> MetricsServer:
        handler = _handler(self)
        server_class = _IPv6Server if ":" in self.host else HTTPServer
        try:
            self._httpd = server_class((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigError(
                f"metrics_port {self.port} on {self.host}: cannot listen ({exc.strerror})"
            ) from exc
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()
        log.event("metrics.listening", host=self.host, port=self.port)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(REQUEST_TIMEOUT)
        self.client.close()


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                try:
                    body, status = generate_latest(server.registry), 200
                except Exception as exc:
                    log.event("metrics.scrape_failed", error=type(exc).__name__)
                    self._send(500, b"scrape failed\n", "text/plain; charset=utf-8")
                    return
                self._send(status, body, CONTENT_TYPE_LATEST)
            elif path == "/health":
                ok, checks = server.health()
                body = json.dumps({"status": "ok" if ok else "down", **checks}).encode()
                self._send(200 if ok else 503, body + b"\n", "application/json")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # A scrape every few seconds is not an event worth a log line.
            pass

    return Handler


@contextlib.contextmanager
def serving(
    settings: Settings, store: Store, broker: RedisBroker, redis_url: str
) -> Iterator[MetricsServer | None]:
    """The metrics server while the block runs, if ``metrics_port`` is set."""
    if not settings.metrics_port:
        yield None
        return
    server = MetricsServer(settings, store, broker, redis_url).start()
    try:
        yield server
    finally:
        server.stop()
