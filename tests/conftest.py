"""Fixtures: a real Redis (the embedded redis-server), a real dramatiq worker, real
files in ``tmp_path``, and the real ``invoice-worker`` process for CLI tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import drop, wait_files
from mailserver import MailServer

from worker import broker as broker_module
from worker import log
from worker.pipeline import Runtime
from worker.redis_server import EmbeddedRedis
from worker.settings import Settings, load
from worker.store import Store
from worker.watcher import Watcher


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    log.setup("text", "INFO")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server (the embedded one) for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, recording what it accepts."""
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    s = load(
        env={}, home=home, settle_seconds=0.1, scan_seconds=0.5, worker_threads=2, lease_seconds=10
    )
    s.ensure_folders()
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings.state_db).open()
    yield s
    s.close()


@pytest.fixture
def broker(redis_url: str) -> Iterator[Any]:
    b = broker_module.install(redis_url)
    b.client.flushdb()
    yield b
    b.client.flushdb()


class Harness:
    """The pipeline in this process: real broker, real worker threads, real watcher."""

    def __init__(self, settings: Settings, store: Store, broker: Any) -> None:
        from worker import actors, service

        self.settings, self.store, self.broker = settings, store, broker
        self.runtime = Runtime(settings=settings, store=store)
        actors.bind(self.runtime)
        self.worker = broker_module.worker(broker, settings.worker_threads)
        self.watcher = Watcher(settings, store, service.enqueuer(store))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Harness:
        self.worker.start()
        self.watcher.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        from worker import service

        while not self._stop.is_set():
            if self.watcher.step():
                service.kick_mail_if_due(self.store)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.watcher.stop()
        self.worker.stop(timeout=10_000)

    def drop(self, name: str, content: str | bytes) -> Path:
        return drop(self.settings, name, content)

    def wait_final(self, count: int = 1, timeout: float = 30, **kw: Any) -> list[dict[str, Any]]:
        return wait_files(self.store, count, timeout, **kw)

    def wait_mail(self, timeout: float = 10) -> None:
        """Wait until no email is left to send: administrators' and customers'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.store.one(
                "SELECT 1 FROM outbox WHERE state = 'pending'"
            ) and not self.store.one(
                "SELECT 1 FROM invoices WHERE email_state IN ('pending', 'sending')"
            ):
                return
            time.sleep(0.05)
        raise AssertionError("emails still pending")


@pytest.fixture
def pipeline(settings: Settings, store: Store, broker: Any) -> Iterator[Harness]:
    h = Harness(settings, store, broker).start()
    yield h
    h.stop()


@pytest.fixture
def make_pipeline(store: Store, broker: Any) -> Iterator[Callable[[Settings], Harness]]:
    """A harness on settings the test chooses (approval, accounts, ...)."""
    made: list[Harness] = []

    def make(s: Settings) -> Harness:
        h = Harness(s, store, broker).start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()
