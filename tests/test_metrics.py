"""Metrics and health: the real service serves them, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import cli_env, drop, invoice_csv, invoice_row, run_file
from prometheus_client.parser import text_string_to_metric_families

from worker.errors import ConfigError
from worker.service.metrics import MetricsServer
from worker.settings import Settings, load
from worker.state import Store

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port(span: int = 1) -> int:
    """A port of 127.0.0.1 free now, with the ``span - 1`` after it free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + span < 65536 and all(_free(port + n) for n in range(1, span)):
            return port
    raise AssertionError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_scrape(
    port: int, ready: Callable[[Samples], bool], log: Path | None = None, timeout: float = 90
) -> Samples:
    """Scrape until ``ready`` holds (generous: six agents share two cores)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        try:
            samples = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            samples = {}
        if samples and ready(samples):
            return samples
        time.sleep(0.1)
    output = log.read_text(errors="replace") if log else ""
    raise AssertionError(f"metrics never ready: {samples}\n{output}")


def wait_health(port: int, status: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    answer: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        try:
            answer = get(port, "/health")
        except (urllib.error.URLError, ConnectionError) as exc:
            answer = (0, str(exc).encode())
        if answer[0] == status:
            return dict(json.loads(answer[1]))
        time.sleep(0.1)
    raise AssertionError(f"/health never {status}: {answer}")


def listening(pid: int, port: int) -> list[str]:
    """The addresses the process ``pid`` listens on at ``port``."""
    return [
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Starts a real ``invoice-worker COMMAND`` on ``tmp_path/home``; each is stopped
    (SIGTERM, then kill) after the test, failed or not."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: str, ready: str, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
        home = tmp_path / "home"
        (home / "inbox").mkdir(parents=True, exist_ok=True)
        log = home / f"{command}-{len(started)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", command],
            env=cli_env(home, **env),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        started.append(proc)
        deadline = time.monotonic() + 90
        while log.read_text(errors="replace").count("metrics.listening") < int(ready):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        return proc, log

    yield start
    for proc in reversed(started):
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def emailed(n: int, **fields: Any) -> dict[str, Any]:
    return invoice_row(n, notification_type="EMAIL", **fields)


def test_run_serves_the_whole_systems_numbers_from_each_process_on_its_own_port(
    service: Any, tmp_path: Path
):
    # Given run with two worker processes in all, metrics on a port (and the next)
    port = free_port(span=2)
    proc, log = service(
        "run", ready="2", INVOICE_WORKER_METRICS_PORT=str(port), INVOICE_WORKER_WORKER_PROCESSES="2"
    )
    home = tmp_path / "home"
    settings = load(env={}, home=home)
    # When an invoices file (three good rows, one bad) and an unusable file are dropped
    rows = [emailed(1), emailed(2), emailed(3), emailed(4, amount="abc")]
    drop(settings, "march.csv", invoice_csv(rows))
    drop(settings, "junk.csv", "nonsense\n")

    # Then the endpoint counts files by kind and state, rows, invoices and emails
    def done(s: Samples) -> bool:
        return (
            value(s, "invoice_worker_files", kind="invoices", state="processed") == 1
            and value(s, "invoice_worker_emails", audience="customer", state="sent") == 3
            and value(s, "invoice_worker_emails", audience="admin", state="pending") == 0
            and value(s, "invoice_worker_emails", audience="admin", state="sent") >= 2
        )

    samples = wait_scrape(port, done, log)
    assert value(samples, "invoice_worker_files", kind="unknown", state="rejected") == 1
    assert value(samples, "invoice_worker_rows_valid_total", kind="invoices") == 3
    assert value(samples, "invoice_worker_rows_rejected_total", kind="invoices") == 1
    assert value(samples, "invoice_worker_invoices_created_total", kind="invoices") == 3
    for state in ("pending", "sending", "deferred", "failed"):
        assert value(samples, "invoice_worker_emails", audience="customer", state=state) == 0
    assert value(samples, "invoice_worker_emails", audience="admin", state="failed") == 0
    assert value(samples, "invoice_worker_webhooks", state="pending") == 0
    assert value(samples, "invoice_worker_oldest_unfinished_file_age_seconds") == 0
    assert value(samples, "invoice_worker_queue_messages", queue="files") == 0
    # And the worker process run started serves the same numbers on the next port
    child = wait_scrape(port + 1, done, log)
    assert value(child, "invoice_worker_rows_valid_total", kind="invoices") == 3
    # And each process listens on 127.0.0.1 only, the default
    assert listening(proc.pid, port) == ["127.0.0.1"]
    children = psutil.Process(proc.pid).children()
    assert [ip for c in children for ip in listening(c.pid, port + 1)] == ["127.0.0.1"]
    assert wait_health(port, 200) == {"status": "ok", "broker": "ok", "database": "ok"}

    # When the embedded Redis goes away under them
    redis_pid = int((home / "var" / "redis" / "redis.pid").read_text())
    os.kill(redis_pid, signal.SIGKILL)
    # Then each process's health check says its broker is down
    for each in (port, port + 1):
        answer = wait_health(each, 503)
        assert answer["broker"].startswith("down") and answer["database"] == "ok"
    # And /metrics still answers from the database
    assert value(scrape(port), "invoice_worker_files", kind="invoices", state="processed") == 1


def test_queue_depth_and_the_oldest_unfinished_file_show_files_waiting_for_a_worker(
    service: Any, tmp_path: Path
):
    # Given only the watcher, with metrics
    port = free_port()
    _, watch_log = service("watch", ready="1", INVOICE_WORKER_METRICS_PORT=str(port))
    settings = load(env={}, home=tmp_path / "home")
    # When a file is dropped and no worker runs its job
    drop(settings, "waiting.csv", invoice_csv([emailed(1), emailed(2)]))
    # Then its job is in the queue, and the file waits, older and older
    samples = wait_scrape(
        port,
        lambda s: (
            value(s, "invoice_worker_queue_messages", queue="files") >= 1
            and value(s, "invoice_worker_oldest_unfinished_file_age_seconds") >= 1
        ),
        watch_log,
    )
    assert value(samples, "invoice_worker_files", kind="unknown", state="received") == 1
    # When a worker starts (on a port of its own: it is another process on this host)
    worker_port = free_port()
    service("worker", ready="1", INVOICE_WORKER_METRICS_PORT=str(worker_port))
    # Then the queue drains and nothing is left unfinished, as the watcher's endpoint sees too
    samples = wait_scrape(
        port,
        lambda s: (
            value(s, "invoice_worker_files", kind="invoices", state="processed") == 1
            and value(s, "invoice_worker_queue_messages", queue="files") == 0
            and value(s, "invoice_worker_emails", audience="customer", state="sent") == 2
        ),
        watch_log,
    )
    assert value(samples, "invoice_worker_oldest_unfinished_file_age_seconds") == 0
    assert value(samples, "invoice_worker_invoices_created_total", kind="invoices") == 2


@pytest.fixture
def metrics_server(
    settings: Settings, store: Store, broker: Any, redis_url: str
) -> Iterator[Callable[..., MetricsServer]]:
    """A metrics server in this process, on the real Redis and the real state database."""
    made: list[MetricsServer] = []

    def make(**changes: Any) -> MetricsServer:
        server = MetricsServer(
            settings.with_(metrics_port=free_port(), **changes), store, broker, redis_url
        ).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def test_health_is_503_when_the_database_cannot_be_read(metrics_server: Any, settings: Settings):
    # Given a metrics server whose database answers
    server = metrics_server()
    assert wait_health(server.port, 200)["database"] == "ok"
    # When the database loses its files table (as a broken or foreign database would)
    with sqlite3.connect(settings.state_db) as conn:
        conn.execute("ALTER TABLE files RENAME TO files_gone")
    # Then the health check says so, and a scrape fails rather than lie
    answer = wait_health(server.port, 503)
    assert answer["database"].startswith("down") and answer["broker"] == "ok"
    assert get(server.port, "/metrics")[0] == 500


def test_the_metrics_server_listens_on_metrics_host_only(metrics_server: Any):
    # Given metrics_host set to another loopback address
    server = metrics_server(metrics_host="127.0.0.2")
    # Then it answers there, and nothing listens on that port of 127.0.0.1
    assert get(server.port, "/health", host="127.0.0.2")[0] == 200
    assert listening(os.getpid(), server.port) == ["127.0.0.2"]
    with pytest.raises(urllib.error.URLError):
        get(server.port, "/health")


def test_metrics_settings_default_to_none_on_127_0_0_1_and_check_the_port(tmp_path: Path):
    assert load(env={}, home=tmp_path).metrics_port is None
    assert load(env={}, home=tmp_path).metrics_host == "127.0.0.1"
    env = {"INVOICE_WORKER_METRICS_PORT": "9310"}
    assert load(env=env, home=tmp_path).metrics_port == 9310
    assert load(env={"INVOICE_WORKER_METRICS_PORT": ""}, home=tmp_path).metrics_port is None
    with pytest.raises(ConfigError, match="metrics_port"):
        load(env={"INVOICE_WORKER_METRICS_PORT": "70000"}, home=tmp_path)


def test_a_port_already_taken_is_a_clear_error(
    metrics_server: Any, settings: Settings, store, broker, redis_url
):
    # Given a port something already listens on
    taken = metrics_server()
    # Then a second server on it says which port, rather than serving nothing
    second = MetricsServer(settings.with_(metrics_port=taken.port), store, broker, redis_url)
    with pytest.raises(ConfigError, match=str(taken.port)):
        second.start()
    second.stop()


def test_customer_emails_sent_failed_and_deferred_are_counted_as_a_server_answers(
    make_pipeline: Any, settings: Settings, smtp: Any, metrics_server: Any
):
    # Given a mail server that refuses one recipient (550) and keeps deferring another (450)
    smtp.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: Recipient address rejected"
    smtp.defer["busy@example.com"] = 1_000
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    server = metrics_server()
    rows = [
        emailed(1, customer_email="ok@example.com"),
        emailed(2, customer_email="gone@example.com"),
        emailed(3, customer_email="busy@example.com"),
    ]
    # When a file with one email to each is processed
    h.drop("bounce.csv", invoice_csv(rows))

    def customer(s: Samples, state: str) -> float:
        return value(s, "invoice_worker_emails", audience="customer", state=state)

    # Then one is sent, one failed and one deferred, while the file is final
    wait_scrape(
        server.port,
        lambda s: (
            value(s, "invoice_worker_files", kind="invoices", state="processed") == 1
            and (customer(s, "sent"), customer(s, "failed"), customer(s, "deferred")) == (1, 1, 1)
        ),
    )
    # When the server takes the deferred one at last
    smtp.defer["busy@example.com"] = 0
    # Then it is counted as sent, and none is left open
    samples = wait_scrape(
        server.port, lambda s: (customer(s, "sent"), customer(s, "deferred")) == (2, 0)
    )
    assert customer(samples, "failed") == 1 and customer(samples, "pending") == 0


def test_rows_answered_with_an_existing_invoice_are_counted_apart(
    pipeline: Any, metrics_server: Any
):
    # Given a file of three invoices processed, then sent again as a spreadsheet user
    # would export it (other delimiter), with one amount corrected
    rows = [invoice_row(n, request_expiry_date="2031-01-01T10:00:00Z") for n in (1, 2, 3)]
    first = run_file(pipeline, "march.csv", invoice_csv(rows))
    assert first.state == "processed"
    again = [*rows[:2], {**rows[2], "amount": "777"}]
    second = run_file(pipeline, "march-again.csv", invoice_csv(again).replace(",", ";"))
    assert second.state == "processed"
    # Then the endpoint counts the two same rows as existing, the changed one rejected
    server = metrics_server()
    samples = scrape(server.port)
    assert value(samples, "invoice_worker_rows_existing_total", kind="invoices") == 2
    assert value(samples, "invoice_worker_rows_rejected_total", kind="invoices") == 1
    assert value(samples, "invoice_worker_invoices_created_total", kind="invoices") == 3
