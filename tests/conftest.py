"""Fixtures: a real Redis (the embedded redis-server), a real PostgreSQL (pgserver), a
real dramatiq worker, real files in ``tmp_path``, and the real ``invoice-worker`` process
for CLI tests.

A test module marked ``pytestmark = pytest.mark.backends`` runs each of its tests that
use ``store`` (or ``settings``) twice: on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import WEBHOOK_SECRET, cli_env, drop, wait_files
from mailserver import MailServer
from sshd import Mount, Sshd, require_tools

from worker import log, state
from worker.intake.watcher import Watcher
from worker.kinds import KINDS
from worker.pipeline.runtime import Runtime
from worker.service import broker as broker_module
from worker.service.redis import EmbeddedRedis
from worker.settings import Settings, load
from worker.state import File, Store

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    log.setup("text", "INFO")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server (the embedded one) for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


#: The backend of the tests not marked ``backends``: ``INVOICE_WORKER_TEST_BACKEND=postgresql``
#: runs the whole suite's in-process state on PostgreSQL.
DEFAULT_BACKEND = os.environ.get("INVOICE_WORKER_TEST_BACKEND", "sqlite")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The state's backend: SQLite (or the default above), unless the module is marked
    ``backends``: then each of its tests runs on both."""
    return str(getattr(request, "param", DEFAULT_BACKEND))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One real PostgreSQL (pgserver's) for the session, on a Unix socket in its folder."""
    import pgserver

    # pgserver logs each command it runs at INFO, and once more at exit, after pytest
    # closed the stream.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # Not under pytest's own temporary folder: that is the owner's only, and pgserver runs
    # the server as a user of its own when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="invoice-worker-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count(1)


def _psql(server: Any, sql: str) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def database_url_factory(postgres: Any) -> Iterator[Callable[[], str]]:
    """Makes new, empty PostgreSQL databases; returns each one's URL. Dropped after."""
    made: list[str] = []

    def make() -> str:
        name = f"test_{next(_databases)}"
        _psql(postgres, f"CREATE DATABASE {name}")
        made.append(name)
        return str(postgres.get_uri(name))

    yield make
    for name in made:
        # FORCE: connections a test's threads left open go with it.
        _psql(postgres, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """None on SQLite; on PostgreSQL the URL of a new, empty database of its own."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("database_url_factory")())


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, recording what it accepts."""
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    home = tmp_path / "home"
    s = load(
        env={},
        home=home,
        settle_seconds=0.1,
        scan_seconds=0.5,
        worker_threads=2,
        lease_seconds=10,
        database_url=database_url,
    )
    s.ensure_folders()
    if database_url:
        # The real CLI, started on this home, shares the test's PostgreSQL database.
        (home / "invoice-worker.toml").write_text(f"database_url = {json.dumps(database_url)}\n")
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = state.connect(settings)
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
        from worker.service import actors
        from worker.service import run as service

        self.settings, self.store, self.broker = settings, store, broker
        self.runtime = Runtime(settings=settings, store=store, kinds=KINDS)
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
        from worker.service import run as service

        while not self._stop.is_set():
            if self.watcher.step():
                service.kick_mail_if_due(self.store)
                service.kick_webhooks_if_due(self.store, self.settings)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.watcher.stop()
        self.worker.stop(timeout=10_000)

    def drop(self, name: str, content: str | bytes) -> Path:
        return drop(self.settings, name, content)

    def wait_final(self, count: int = 1, timeout: float = 30, **kw: Any) -> list[File]:
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


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1: records every POST and answers as it is told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures_left = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    failing = receiver.failures_left > 0
                    receiver.failures_left -= 1 if failing else 0
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "status": 500 if failing else 204,
                        }
                    )
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/invoice-worker"

    def fail_next(self, count: int) -> None:
        with self.lock:
            self.failures_left = count

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def succeeded(self) -> list[dict[str, Any]]:
        return [r for r in self.received() if r["status"] < 300]

    def wait(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received()) >= count:
                return self.received()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received())} webhook requests, expected {count}")

    def json(self, index: int) -> dict[str, Any]:
        return json.loads(self.received()[index]["body"])


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def merchant(
    make_pipeline: Callable[[Settings], Harness],
    settings: Settings,
    webhook_receiver: WebhookReceiver,
) -> Harness:
    """The pipeline with the merchant webhook pointed at ``webhook_receiver``."""
    return make_pipeline(
        settings.with_(
            merchant_webhook_url=webhook_receiver.url, merchant_webhook_secret=WEBHOOK_SECRET
        )
    )


# -- real mounts: an OpenSSH sshd on 127.0.0.1 and sshfs (`make test-mounts`) ------------


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real OpenSSH sshd on a free port of 127.0.0.1, for the whole session."""
    require_tools()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def sshfs(sshd: Sshd) -> Iterator[Callable[[Path, Path], Mount]]:
    """Mounts a server folder with sshfs (default options); each is unmounted after the
    test, failed or not."""
    mounts: list[Mount] = []

    def mount(remote: Path, mountpoint: Path) -> Mount:
        made = sshd.mount(remote, mountpoint)
        mounts.append(made)
        return made

    yield mount
    for made in reversed(mounts):
        made.unmount()


_deselected_mounts: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    _deselected_mounts.extend(i.nodeid for i in items if i.get_closest_marker("mounts"))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """`make test` leaves the mount tests out (``-m "not mounts"``): say so last, and how
    to run them."""
    if _deselected_mounts and "mounts" in (config.option.markexpr or ""):
        terminalreporter.write_line(
            f"{len(_deselected_mounts)} mount tests (real sshd and sshfs) were not run: "
            "run them with `make test-mounts` (as root it installs openssh-server and sshfs)",
            yellow=True,
            bold=True,
        )


@pytest.fixture
def worker_run() -> Iterator[Callable[..., Path]]:
    """Starts the real ``invoice-worker run`` process on a home the test chooses, with
    environment overrides; returns its log once the watcher runs. Stopped (SIGTERM) after
    the test, failed or not."""
    started: list[subprocess.Popen[bytes]] = []

    def start(home: Path, timeout: float = 60, **env: str) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        log_path = home / "run.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            env=cli_env(home, **env),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
        started.append(proc)
        deadline = time.monotonic() + timeout
        while "watcher.started" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)
        return log_path

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[Any]:
    """A real SFTP server process (asyncssh, tests/sftpserver.py) on 127.0.0.1, with a host
    key, a client key and a known_hosts file of its own in tmp_path."""
    from sftpserver import SftpServer

    server = SftpServer(tmp_path / "sftp").start()
    yield server
    server.kill()


@pytest.fixture
def sftp_settings(settings: Settings, sftp_server: Any) -> Settings:
    """The test settings, pulling from ``sftp_server`` with its client key."""
    return settings.with_(
        sftp_url=sftp_server.url(),
        sftp_known_hosts=str(sftp_server.known_hosts),
        sftp_key_file=str(sftp_server.client_key),
        sftp_poll_seconds=0.2,
    )
