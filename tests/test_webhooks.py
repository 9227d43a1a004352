"""The merchant webhook is delivered exactly once: through endpoint failures and a killed worker."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import (
    WEBHOOK_SECRET,
    cli,
    cli_env,
    create_invoices,
    invoice_csv,
    invoice_row,
    payment_csv,
    payment_row,
    run_file,
)

from notifications import webhook
from worker.delivery import webhooks
from worker.errors import ConfigError
from worker.settings import load
from worker.state import SQLiteStore
from worker.state.numbers import FIRST_INVOICE_NUMBER


def test_a_failing_endpoint_gets_the_notification_exactly_once_more(
    merchant, store, webhook_receiver
):
    # Given a merchant endpoint that answers 500 twice, then 2xx
    webhook_receiver.fail_next(2)
    [number] = create_invoices(merchant, [invoice_row(1)])
    # When an invoice is paid
    run_file(merchant, "pay.csv", payment_csv([payment_row("PAY-1", number, 10000)]))
    # Then the notification is retried with backoff until it gets through, then never again
    requests = webhook_receiver.wait(3, timeout=30)
    time.sleep(2.5)
    assert [r["status"] for r in webhook_receiver.received()] == [500, 500, 204]
    assert len({r["body"] for r in requests}) == 1
    assert len({r["headers"]["X-Invoice-Worker-Delivery"] for r in requests}) == 1
    row = store.one("SELECT state, attempts, last_error, sent_at FROM webhooks")
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert row["sent_at"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except sqlite3.OperationalError:
            pass  # the database exists before its migrations have run: not yet
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_between_payment_and_notification_notifies_once_after_restart(
    tmp_path, webhook_receiver
):
    # Given a real worker process whose merchant endpoint is down
    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    down = f"http://127.0.0.1:{_free_port()}/hooks"
    hook_env = {"INVOICE_WORKER_MERCHANT_WEBHOOK_SECRET": WEBHOOK_SECRET}
    env = cli_env(home, INVOICE_WORKER_MERCHANT_WEBHOOK_URL=down, **hook_env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (home / "inbox" / "invoices.csv").write_text(invoice_csv([invoice_row(1)]))
        store_path = home / "var" / "state.db"
        _wait(lambda: store_path.exists(), what="the state database")
        store = SQLiteStore(store_path)
        _wait(
            lambda: store.one(
                "SELECT 1 FROM invoices WHERE invoice_number = ?", (FIRST_INVOICE_NUMBER,)
            ),
            what="the invoice",
        )
        payments = payment_csv([payment_row("PAY-1", FIRST_INVOICE_NUMBER, 10000)])
        (home / "inbox" / "payments.csv").write_text(payments)
        # When the payment is recorded and its notification has failed once (not in flight)
        _wait(
            lambda: store.one(
                "SELECT 1 FROM webhooks WHERE attempts >= 1 AND last_error IS NOT NULL"
                " AND next_attempt_at < ?",
                (time.time() + webhooks.CLAIM_SECONDS / 2,),
            ),
            what="a failed delivery",
        )
        # ... and the worker is killed before it could notify
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert (
        store.one("SELECT status FROM invoices WHERE invoice_number = ?", (FIRST_INVOICE_NUMBER,))[
            0
        ]
        == "PAID"
    )
    assert webhook_receiver.received() == []
    # Then a fresh worker, with the endpoint back, notifies exactly once
    done = cli(
        "run",
        "--once",
        home=home,
        INVOICE_WORKER_MERCHANT_WEBHOOK_URL=webhook_receiver.url,
        **hook_env,
    )
    assert done.returncode == 0, done.stderr
    [hook] = webhook_receiver.received()
    assert b'"paymentReference":"PAY-1"' in hook["body"]
    # And another start sends nothing more
    again = cli(
        "run",
        "--once",
        home=home,
        INVOICE_WORKER_MERCHANT_WEBHOOK_URL=webhook_receiver.url,
        **hook_env,
    )
    assert again.returncode == 0, again.stderr
    assert len(webhook_receiver.received()) == 1
    assert store.one("SELECT state FROM webhooks")[0] == "sent"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INVOICE_WORKER_MERCHANT_WEBHOOK_URL": "https://m.example/h"}, "merchant_webhook_secret"),
        (
            {
                "INVOICE_WORKER_MERCHANT_WEBHOOK_URL": "ftp://m.example/h",
                "INVOICE_WORKER_MERCHANT_WEBHOOK_SECRET": "s",
            },
            "http:// or https://",
        ),
    ],
    ids=["no-secret", "not-http"],
)
def test_a_webhook_url_needs_a_secret_and_http(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env, home=tmp_path)


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body():
    body = b'{"event":"invoice.paid"}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert webhook.sign(body, "k") == f"sha256={expected}"
    assert webhook.sign(body + b" ", "k") != webhook.sign(body, "k")


def test_every_queue_backs_off_from_the_same_base_up_to_its_own_cap():
    # Given the one backoff of the due-row queues
    from worker.delivery import outbox
    from worker.state.queue import backoff

    # When tries fail one after another
    emails = [backoff(n, outbox.MAX_BACKOFF) for n in range(1, 11)]
    hooks = [backoff(n, webhooks.MAX_BACKOFF) for n in range(1, 12)]
    # Then each waits twice the last, from 2 s, up to 5 minutes (emails) or 15 (webhooks)
    assert emails == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert hooks[:9] == [*emails[:8], 512] and hooks[-1] == 900
