"""Several hosts (SPEC 14), simulated: worker processes with local ``var/`` folders of
their own, one real PostgreSQL, one real Redis, and folders they all share. One host is
killed with SIGKILL mid-file; the other finishes the file within ``lease_seconds``, with
nothing made twice and nothing lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from helpers import big_invoice_file, cli_env, payment_csv, payment_row

LEASE_SECONDS = 4


class Hosts:
    """Hosts sharing a database, a Redis and ``shared/{inbox,outbox,archive,rejected}``."""

    def __init__(self, root: Path, database_url: str, redis_url: str) -> None:
        self.root, self.database_url, self.redis_url = root, database_url, redis_url
        self.shared = root / "shared"
        for folder in ("inbox", "outbox", "archive", "rejected"):
            (self.shared / folder).mkdir(parents=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, name: str, **extra: str) -> dict[str, str]:
        home = self.root / name
        home.mkdir(exist_ok=True)
        return cli_env(
            home,
            INVOICE_WORKER_DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            INVOICE_WORKER_LEASE_SECONDS=str(LEASE_SECONDS),
            # Distinct hosts: a dead one's leases are taken over once its heartbeat
            # stops, not at once as a dead process of one's own host.
            INVOICE_WORKER_HOST_NAME=name,
            **{f"INVOICE_WORKER_{f.upper()}_DIR": str(self.shared / f) for f in self.folders},
            **extra,
        )

    folders = ("inbox", "outbox", "archive", "rejected")

    def start(self, name: str, **extra: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        env = self.env(name, **extra)
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(home / "run.log").open("ab"),
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.root / name / "run.log").read_text(errors="replace")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def value(self, sql: str) -> Any:
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def wait(self, check: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except psycopg.errors.UndefinedTable:
                pass  # not migrated yet
            logs = {n.name: self.log(n.name)[-1500:] for n in self.root.glob("host-*")}
            assert time.monotonic() < deadline, f"{what} not reached: {logs}"
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def hosts(tmp_path: Path, database_url_factory: Any, redis_url: str) -> Iterator[Hosts]:
    h = Hosts(tmp_path, database_url_factory(), redis_url)
    yield h
    h.stop()


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_a_host_killed_mid_file_leaves_it_to_another_which_makes_each_invoice_once(hosts):
    # Given host A processing a 200,000-row file in chunks of 20,000
    rows = 200_000
    valid = big_invoice_file(hosts.shared / "inbox" / "big.csv", rows)
    chunked = {"INVOICE_WORKER_CHUNK_ROWS": "20000"}
    a = hosts.start("host-a", **chunked)
    hosts.wait(lambda: 2 <= hosts.value("SELECT count(*) FROM chunks") < 10, what="chunks")

    # When A dies (its var/ with it, as on another machine) and host B is running
    kill(a)
    killed_at = time.monotonic()
    hosts.start("host-b", **chunked)

    # Then B finishes the file, from the original A had claimed
    hosts.wait(lambda: hosts.value("SELECT state FROM files") == "processed", what="processed by B")
    assert time.monotonic() - killed_at < LEASE_SECONDS + 90
    assert "file.work_lost" in hosts.log("host-b")
    # And every valid row is an invoice exactly once, the results giving its own link
    assert hosts.query("SELECT count(*), count(DISTINCT merchant_reference) FROM invoices") == [
        (valid, valid)
    ]
    results = pl.read_csv(hosts.shared / "outbox" / "big.csv.results.csv", infer_schema=False)
    assert results.height == rows
    created = results.filter(pl.col("status") == "CREATED").select(
        pl.col("invoice_number").cast(pl.Int64), "payment_link_url"
    )
    stored = pl.DataFrame(
        hosts.query("SELECT invoice_number, payment_link_url FROM invoices"),
        schema=["invoice_number", "payment_link_url"],
        orient="row",
    )
    assert created.sort("invoice_number").equals(stored.sort("invoice_number"))
    assert (hosts.shared / "archive" / "big.csv").exists()


def test_a_host_killed_mid_payment_file_leaves_each_invoice_paid_once(hosts):
    # Given 20,000 invoices made by host A, then a file paying each, in chunks of 500
    n = 20_000
    big_invoice_file(hosts.shared / "inbox" / "invoices.csv", n, bad_every=n + 1)
    a = hosts.start("host-a", INVOICE_WORKER_CHUNK_ROWS="500")
    hosts.wait(lambda: hosts.value("SELECT state FROM files") == "processed", what="invoices")
    invoices = hosts.query("SELECT invoice_number, amount FROM invoices ORDER BY 1")
    payments = [payment_row(f"PAY-{i}", num, amount) for i, (num, amount) in enumerate(invoices)]
    (hosts.shared / "inbox" / ".payments.tmp").write_text(payment_csv(payments), "utf-8")
    (hosts.shared / "inbox" / ".payments.tmp").rename(hosts.shared / "inbox" / "payments.csv")

    # When A is killed with some of the payments applied, and host B is running
    hosts.wait(lambda: 1_000 <= hosts.value("SELECT count(*) FROM payments") < n, what="paying")
    kill(a)
    hosts.start("host-b", INVOICE_WORKER_CHUNK_ROWS="500")

    # Then each invoice is paid once, and the results tell every row as applied
    hosts.wait(
        lambda: hosts.value("SELECT count(*) FROM files WHERE state = 'processed'") == 2,
        what="payments processed by B",
    )
    assert hosts.query("SELECT count(*), count(DISTINCT invoice_number) FROM payments") == [(n, n)]
    assert hosts.value("SELECT count(*) FROM invoices WHERE status = 'PAID'") == n
    results = pl.read_csv(hosts.shared / "outbox" / "payments.csv.results.csv", infer_schema=False)
    assert results.height == n
    assert results["status"].unique().to_list() == ["APPLIED"]


def test_a_host_killed_mid_email_run_leaves_the_rest_to_another_and_each_customer_one_email(
    hosts, smtp
):
    # Given host A sending 400 customer emails over SMTP, paced at 300 a second
    n = 400
    source = hosts.root / "emails.csv"
    big_invoice_file(source, n, bad_every=n + 1)
    pl.read_csv(source, infer_schema=False).with_columns(
        notification_type=pl.lit("EMAIL")
    ).write_csv(source)
    source.rename(hosts.shared / "inbox" / "emails.csv")
    mail = {"INVOICE_WORKER_SMTP_URL": smtp.url, "INVOICE_WORKER_MAIL_RATE": "300"}
    a = hosts.start("host-a", **mail)

    # When A dies some fifty emails in, and host B is running
    customers = lambda: [r for r in smtp.received if r.rcpt_tos[0].startswith("c")]  # noqa: E731
    hosts.wait(lambda: len(customers()) >= 50, what="emails from A")
    kill(a)
    hosts.start("host-b", **mail)

    # Then B sends the rest: every customer has their email
    hosts.wait(
        lambda: hosts.value("SELECT count(*) FROM invoices WHERE email_state = 'sent'") == n,
        timeout=300,
        what="all sent",
    )
    got = customers()
    assert {r.rcpt_tos[0] for r in got} == {f"c{i}@example.com" for i in range(1, n + 1)}
    # And at most the one in flight when A died went twice, with its Message-ID kept
    # (SMTP has no way to tell a crash after the server took it from one before)
    ids = [r.message["Message-ID"] for r in got]
    assert len(ids) - len(set(ids)) <= 1
    assert len(got) - n == len(ids) - len(set(ids))
