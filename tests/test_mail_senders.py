"""Several customer-mail senders share the queue: each email goes once, across crashes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

from helpers import cli_env

from notifications.transport import EmlFolder, Smtp
from worker.delivery import customers as invoice_mail
from worker.settings import Settings
from worker.state import Store, leases, mail

FIRST = 100_000_000_001
LANGUAGES = ("en", "fr", "rw", "ar")
#: A child process that waits for ``go`` to appear, then sends until the queue is empty.
SENDER = """
import json, sys, time
from pathlib import Path
from notifications.transport import from_url
from worker import state
from worker.delivery import customers
from worker.settings import load

go = Path(sys.argv[1])
settings = load()
store = state.connect(settings)
while not go.exists():
    time.sleep(0.005)
transport = from_url(settings.smtp_url, settings.mail)
sent = 0
while (run := customers.deliver(store, transport, settings)) and run.sent:
    sent += run.sent
print(json.dumps({"sent": sent, "connections": getattr(transport, "connections", None)}))
"""


def queue_invoices(store: Store, count: int) -> list[int]:
    """``count`` invoices whose customer email is due, as processing leaves them."""
    numbers = list(range(FIRST, FIRST + count))
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO files (id, name, claimed_path, state, received_at, updated_at)"
            " VALUES (1, 'f.csv', 'x', 'processed', 'now', 'now')"
        )
        conn.executemany(
            "INSERT INTO invoices (invoice_number, file_id, line_number, type, status, amount,"
            " currency, language, customer_email, customer_name, expires_at, token,"
            " payment_link_url, email_state, created_at, updated_at) VALUES (?, 1, ?, 'SINGLE',"
            " 'NEW', 1000, 'USD', ?, ?, ?, '2030-01-01T00:00:00Z', ?, 'https://p.example/x',"
            " 'pending', 'now', 'now')",
            [(n, n - FIRST, LANGUAGES[n % 4], f"c{n}@x.rw", f"C {n}", f"t{n}") for n in numbers],
        )
    return numbers


def states(store: Store) -> dict[str, int]:
    rows = store.all("SELECT email_state, count(*) AS n FROM invoices GROUP BY email_state")
    return {r["email_state"]: r["n"] for r in rows}


def start_senders(settings: Settings, count: int, go: Path, **env: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, str(go)],
            env=cli_env(settings.home, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def test_two_sender_processes_share_the_queue_and_send_each_email_once(settings, store, smtp):
    # Given 1,500 due customer emails, and two sender processes, unpaced over SMTP
    numbers = queue_invoices(store, 1500)
    go = settings.home / "go"
    senders = start_senders(
        settings, 2, go, INVOICE_WORKER_SMTP_URL=smtp.url, INVOICE_WORKER_MAIL_RATE="0"
    )
    # When both start at once and send until nothing is due
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in senders:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # Then each sent a share, over one connection each
    assert all(r["sent"] > 0 for r in results), results
    assert sum(r["sent"] for r in results) == 1500
    assert [r["connections"] for r in results] == [1, 1]
    # And every customer got exactly one email
    counts = Counter(r.rcpt_tos[0] for r in smtp.received)
    assert counts == Counter(f"c{n}@x.rw" for n in numbers)
    assert states(store) == {"sent": 1500}


def test_a_sender_killed_while_writing_eml_files_leaves_one_file_per_invoice(settings, store):
    # Given 4,000 due customer emails and a sender process writing them as .eml files
    numbers = queue_invoices(store, 4000)
    go = settings.home / "go"
    go.touch()
    [sender] = start_senders(settings, 1, go)
    # When it is killed (SIGKILL) once it has written some
    try:
        deadline = time.monotonic() + 120
        while len(list(settings.mail.glob("*.eml"))) < 600 and sender.poll() is None:
            assert time.monotonic() < deadline, "no .eml file appeared"
            time.sleep(0.005)
    finally:
        sender.kill()
        sender.communicate()
    assert states(store).get("sent", 0) < 4000
    # And a sender runs again to finish (a run stops at its time budget with more to
    # do, and is kicked again, as the actor is)
    run = invoice_mail.deliver(store, EmlFolder(settings.mail), settings)
    while run is not None and run.more:
        run = invoice_mail.deliver(store, EmlFolder(settings.mail), settings)
    # Then every invoice has its one file, complete, and is recorded sent
    assert run is not None
    assert states(store) == {"sent": 4000}
    assert sorted(p.name for p in settings.mail.glob("*.eml")) == sorted(
        f"invoice-{n}.eml" for n in numbers
    )
    for path in sorted(settings.mail.glob("*.eml"))[::397]:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert msg["Message-ID"] == f"<{path.stem}@localhost>"
        assert msg.get_body(("html",)) is not None
    assert not invoice_mail.due(store)


def test_eml_files_are_written_unpaced_whatever_the_mail_rate(settings, store):
    # Given a rate that would space SMTP sends 1,000 seconds apart
    queue_invoices(store, 300)
    slow = settings.with_(mail_rate=0.001)
    # When the emails are written as .eml files
    run = invoice_mail.deliver(store, EmlFolder(settings.mail), slow)
    # Then all went in this one run: files are never paced
    assert run is not None and run.sent == 300 and not run.more
    assert len(list(settings.mail.glob("*.eml"))) == 300
    assert states(store) == {"sent": 300}


def test_a_lane_taken_from_a_dead_sender_is_sent_and_the_others_are_left_alone(
    settings, store, smtp
):
    # Given claims in every lane, one lane's by a process that died, the rest by a live one
    queue_invoices(store, mail.LANES * mail.BLOCK)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    live = f"{leases.HOST}:1:alive"
    for lane in range(mail.LANES):
        owner = f"{leases.HOST}:{dead}:gone" if lane == 3 else live
        assert mail.claim(store, lane, owner, 100)
    total = mail.LANES * mail.BLOCK
    assert states(store) == {"sending": total}
    assert invoice_mail.due(store)
    # When a sender runs
    run = invoice_mail.deliver(store, Smtp(smtp.url), settings.with_(mail_rate=0))
    # Then it sent the dead sender's lane, and none of what the live one holds
    assert run is not None and run.sent == mail.BLOCK
    sent = {int(r.rcpt_tos[0][1:].split("@")[0]) for r in smtp.received}
    assert {mail.lane_of(n) for n in sent} == {3}
    assert states(store) == {"sending": total - mail.BLOCK, "sent": mail.BLOCK}


def test_files_that_cannot_be_written_are_not_recorded_sent_and_hold_the_queue(settings, store):
    # Given due emails, and in place of the mail folder a plain file
    queue_invoices(store, 50)
    settings.mail.rmdir()
    settings.mail.write_text("not a folder")
    # When a sender runs
    run = invoice_mail.deliver(store, EmlFolder(settings.mail), settings)
    # Then none is recorded sent: all wait, not before the backoff
    assert run is not None and run.sent == 0 and run.deferred > 0
    rows = store.all("SELECT email_state, email_next_at, email_error FROM invoices")
    assert {r["email_state"] for r in rows} == {"pending"}
    assert all(r["email_next_at"] > time.time() for r in rows)
    assert not invoice_mail.due(store)
