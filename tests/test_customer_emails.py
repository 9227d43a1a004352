"""Customers get their invoice by email, in their language, over a real SMTP server."""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row

from notifications.customers import LANGUAGES, words

ADMIN = "admin@localhost"


def body(msg, kind: str) -> str:
    return msg.get_body((kind,)).get_content()


def customer_messages(smtp):
    return [m for m in smtp.messages() if ADMIN not in str(m["To"])]


@pytest.mark.parametrize(
    ("language", "amount", "currency", "formatted", "direction"),
    [
        ("en", "10000", "USD", "$100.00", "ltr"),
        ("fr", "2000", "RWF", "2\u202f000\xa0RWF", "ltr"),
        ("rw", "100000", "JOD", "JOD\xa0100,000", "ltr"),
        ("AR", "150000", "JOD", "150.000\xa0د.أ.", "rtl"),
    ],
)
def test_a_customer_gets_the_invoice_in_their_language(
    make_pipeline, settings, store, smtp, language, amount, currency, formatted, direction
):
    # Given an invoice file whose row asks for an email in a language
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    row = invoice_row(
        1,
        language=language,
        amount=amount,
        currency=currency,
        notification_type="EMAIL",
        customer_name="Ada Lovelace",
        customer_email="ada@example.com",
        order_description="Engine parts",
    )
    h.drop("lang.csv", invoice_csv([row]))
    # When the file is processed
    h.wait_final()
    h.wait_mail()
    # Then the customer got one email with the link, the amount and the direction
    [msg] = smtp.to("ada@example.com")
    invoice = store.one("SELECT * FROM invoices")
    assert invoice["email_state"] == "sent"
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["To"].addresses[0].display_name == "Ada Lovelace"
    assert msg["Message-ID"] == f"<invoice-{invoice['invoice_number']}@localhost>"
    text, html = body(msg, "plain"), body(msg, "html")
    link = invoice["payment_link_url"]
    assert link in text
    assert f'href="{link}"' in html
    assert formatted in text and formatted in html
    assert "Engine parts" in text and "Engine parts" in html
    assert f'dir="{direction}"' in html
    assert f'lang="{language.lower()}"' in html
    assert str(invoice["invoice_number"]) in msg["Subject"]
    assert words(language.lower())["amount_label"] in text


def test_none_gets_no_email_and_sms_is_recorded_for_the_gateway(
    make_pipeline, settings, store, smtp
):
    # Given rows asking for EMAIL, NONE, SMS, and NONE among others
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    rows = [
        invoice_row(1, notification_type="EMAIL"),
        invoice_row(2, notification_type="NONE"),
        invoice_row(3, notification_type="SMS", customer_phone="+250788000003"),
        invoice_row(4, notification_type="EMAIL,NONE"),
        invoice_row(5, notification_type="sms, email", customer_phone="+250788000005"),
    ]
    h.drop("mixed.csv", invoice_csv(rows))
    # When the file is processed
    h.wait_final()
    h.wait_mail()
    smtp.wait_for(1, Subject="processed")
    # Then only EMAIL rows got an email, SMS rows are recorded, and the report says so
    got = sorted(str(m["To"]) for m in customer_messages(smtp))
    assert got == ["Customer 1 <customer1@example.com>", "Customer 5 <customer5@example.com>"]
    sms = store.all("SELECT customer_phone FROM sms_pending ORDER BY invoice_number")
    assert [r["customer_phone"] for r in sms] == ["+250788000003", "+250788000005"]
    [report] = smtp.wait_for(1, Subject="processed")
    text = body(report, "plain")
    assert "2 invoice emails queued" in text
    assert "2 messages recorded for the SMS gateway" in text


def test_smtp_down_during_a_1000_invoice_file_then_up_every_email_arrives_once(
    make_pipeline, settings, store, smtp
):
    # Given a file of 1,000 invoices that ask for an email, and a server that goes down
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=400))
    rows = [invoice_row(n, notification_type="EMAIL") for n in range(1, 1001)]
    h.drop("big.csv", invoice_csv(rows))
    smtp.wait_for(150, timeout=60, Subject="Invoice")
    # When it closes every session (421), then stops listening for a while
    smtp.closing = True
    time.sleep(0.5)
    smtp.stop()
    time.sleep(2)
    arrived_while_up = len(customer_messages(smtp))
    assert arrived_while_up < 1000
    assert store.one("SELECT count(*) AS n FROM invoices WHERE email_state = 'pending'")["n"] > 0
    # And comes back
    smtp.closing = False
    smtp.start()
    h.wait_final()
    h.wait_mail(timeout=90)
    # Then every customer got exactly one email: no loss, no second copy
    received = customer_messages(smtp)
    ids = [m["Message-ID"] for m in received]
    recipients = [m["To"].addresses[0].addr_spec for m in received]
    assert len(received) == 1000
    assert len(set(ids)) == 1000
    assert sorted(recipients) == sorted(f"customer{n}@example.com" for n in range(1, 1001))
    states = store.all("SELECT email_state, count(*) AS n FROM invoices GROUP BY email_state")
    assert [tuple(r) for r in states] == [("sent", 1000)]
    # And the administrators' reports arrived once each
    subjects = sorted(str(m["Subject"]) for m in smtp.to(ADMIN))
    assert len(subjects) == 2
    assert "processed, 1,000 invoices created" in subjects[0]
    assert "validated, 1,000 of 1,000 rows valid" in subjects[1]


def test_a_5xx_fails_one_recipient_for_good_and_is_reported_and_a_4xx_is_retried(
    make_pipeline, settings, store, smtp
):
    # Given a server that refuses one recipient (550) and defers another twice (450)
    smtp.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: Recipient address rejected"
    smtp.defer["busy@example.com"] = 2
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    rows = [
        invoice_row(1, notification_type="EMAIL", customer_email="ok@example.com"),
        invoice_row(2, notification_type="EMAIL", customer_email="gone@example.com"),
        invoice_row(3, notification_type="EMAIL", customer_email="busy@example.com"),
    ]
    h.drop("bounce.csv", invoice_csv(rows))
    # When the emails have been sent and retried
    h.wait_final()
    h.wait_mail(timeout=30)
    [report] = smtp.wait_for(1, timeout=15, Subject="customer emails failed")
    # Then the deferred one arrived after its retries, once
    assert len(smtp.to("busy@example.com")) == 1
    assert len(smtp.to("ok@example.com")) == 1
    busy = store.one("SELECT * FROM invoices WHERE customer_email = 'busy@example.com'")
    assert busy["email_state"] == "sent" and busy["email_attempts"] == 3
    # And the refused one is failed after one attempt, with the server's answer
    gone = store.one("SELECT * FROM invoices WHERE customer_email = 'gone@example.com'")
    assert gone["email_state"] == "failed" and gone["email_attempts"] == 1
    assert gone["email_error"].startswith("550 5.1.1")
    # And the administrators got one summary naming the file, with every failure attached
    assert "bounce.csv: 1 of 3 customer emails failed" in report["Subject"]
    text = body(report, "plain")
    assert text.startswith("1 of 3 customer emails could not be delivered.")
    assert "gone@example.com" in text
    [attachment] = list(report.iter_attachments())
    assert attachment.get_filename() == "bounce.csv.email-failures.csv"
    lines = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert [(r["line_number"], r["customer_email"]) for r in lines] == [("3", "gone@example.com")]
    # And nothing is retried afterwards
    time.sleep(2.5)
    assert (
        store.one(
            "SELECT email_attempts FROM invoices WHERE invoice_number = ?",
            (gone["invoice_number"],),
        )["email_attempts"]
        == 1
    )
    assert len(smtp.wait_for(1, Subject="customer emails failed")) == 1


def test_a_recipient_deferred_past_the_retry_window_is_failed_and_reported(
    make_pipeline, settings, store, smtp
):
    smtp.defer["busy@example.com"] = 1000
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0, mail_retry_hours=0))
    h.drop(
        "d.csv",
        invoice_csv([invoice_row(1, notification_type="EMAIL", customer_email="busy@example.com")]),
    )
    h.wait_final()
    h.wait_mail()
    busy = store.one("SELECT * FROM invoices")
    assert busy["email_state"] == "failed"
    assert busy["email_error"].startswith("still deferred after 0 h: 450")
    smtp.wait_for(1, Subject="1 of 1 customer email failed")


def test_bulk_sending_is_paced_over_one_connection_with_progress_in_the_logs(
    make_pipeline, settings, smtp, caplog
):
    # Given 60 invoice emails and a rate of 30 per second
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=30))
    rows = [invoice_row(n, notification_type="EMAIL") for n in range(1, 61)]
    h.drop("paced.csv", invoice_csv(rows))
    # When they are sent
    first = smtp.wait_for(1, timeout=30, Subject="Invoice")
    started = time.monotonic()
    smtp.wait_for(60, timeout=30, Subject="Invoice")
    elapsed = time.monotonic() - started
    h.wait_mail()
    # Then they took about two seconds, not a burst, over one SMTP session
    assert first
    assert elapsed >= 59 / 30 * 0.9
    customer_sessions = {r.session for r in smtp.received if "Invoice" in str(r.message["Subject"])}
    assert len(customer_sessions) == 1

    # And the logs said so in a few lines, not one per email (the last is logged once
    # the sender has read the queue one more time, just after the last email)
    def mail_lines() -> list[logging.LogRecord]:
        records = list(caplog.records)  # a copy: the sender's thread may still log
        return [r for r in records if str(getattr(r, "event", "")).startswith("mail.invoices")]

    deadline = time.monotonic() + 30
    while not any(r.event == "mail.invoices.done" for r in mail_lines()):
        assert time.monotonic() < deadline, "mail.invoices.done never logged"
        time.sleep(0.05)
    lines = mail_lines()
    assert 1 <= len(lines) <= 5
    done = [r for r in lines if r.event == "mail.invoices.done"]
    assert done and done[-1].fields["sent"] == 60 and done[-1].fields["connections"] == 1


def test_eml_mode_writes_one_file_per_invoice_and_a_repeat_replaces_it(pipeline, settings, store):
    # Given no SMTP server configured
    pipeline.drop("eml.csv", invoice_csv([invoice_row(1, notification_type="EMAIL")]))
    pipeline.wait_final()
    pipeline.wait_mail()
    invoice = store.one("SELECT * FROM invoices")
    target = settings.mail / f"invoice-{invoice['invoice_number']}.eml"
    assert target.exists()
    # When the email is sent again (as after a crash before its 'sent' mark)
    with store.atomic() as conn:
        conn.execute("UPDATE invoices SET email_state = 'pending', email_next_at = 0")
    from worker.service import actors

    actors.deliver_invoice_mail.send()
    pipeline.wait_mail()
    # Then the same file was replaced, not a second one added
    assert sorted(p.name for p in settings.mail.glob("invoice-*.eml")) == [target.name]


def test_every_language_has_every_sentence():
    english = words("en")
    for language in LANGUAGES:
        table = words(language)
        assert set(table) == set(english), language
        assert table["direction"] == ("rtl" if language == "ar" else "ltr")


def test_a_worker_killed_while_sending_resends_nothing_it_recorded_as_sent(tmp_path, smtp):
    # Given a real worker process sending 300 invoice emails, paced
    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    rows = [invoice_row(n, notification_type="EMAIL") for n in range(1, 301)]
    (home / "inbox" / "crash.csv").write_text(invoice_csv(rows))
    env = {"INVOICE_WORKER_SMTP_URL": smtp.url, "INVOICE_WORKER_MAIL_RATE": "100"}
    with open(tmp_path / "first.log", "w") as log_file:
        first = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            env=cli_env(home, **env),
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        # When it is killed (SIGKILL) in the middle of the customer emails
        try:
            smtp.wait_for(60, timeout=60, Subject="Invoice")
        finally:
            first.kill()
            first.wait()
    state = sqlite3.connect(home / "var" / "state.db")
    sent_before = {
        n
        for (n,) in state.execute("SELECT invoice_number FROM invoices WHERE email_state = 'sent'")
    }
    assert 0 < len(sent_before) < 300
    # And started again, to finish what is there
    done = cli("run", "--once", home=home, **{**env, "INVOICE_WORKER_MAIL_RATE": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    # Then every customer got the email, and none recorded as sent went again
    counts = Counter(str(m["Message-ID"]) for m in customer_messages(smtp))
    numbers = [n for (n,) in state.execute("SELECT invoice_number FROM invoices")]
    assert {f"<invoice-{n}@localhost>" for n in numbers} == set(counts)
    assert all(counts[f"<invoice-{n}@localhost>"] == 1 for n in sent_before)
    # (at most the one in flight at the kill may have gone twice, with the same Message-ID)
    assert sum(counts.values()) - len(counts) <= 1
    states = state.execute("SELECT email_state, count(*) FROM invoices GROUP BY email_state")
    assert list(states) == [("sent", 300)]


def test_emails_a_dead_sender_left_claimed_are_sent_by_the_next(settings, store, smtp):
    # Given invoices whose emails a sender had claimed when its process died
    from worker.delivery import customers as invoice_mail
    from worker.state import leases, mail

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO files (id, name, claimed_path, state, received_at, updated_at)"
            " VALUES (1, 'f.csv', 'x', 'processed', 'now', 'now')"
        )
        conn.executemany(
            "INSERT INTO invoices (invoice_number, file_id, line_number, type, status, amount,"
            " currency, language, customer_email, expires_at, token, payment_link_url,"
            " email_state, email_attempts, created_at, updated_at) VALUES (?, 1, ?, 'SINGLE',"
            " 'NEW', 1000, 'USD', 'en', ?, '2030-01-01T00:00:00Z', ?, 'https://p.example/x',"
            " 'sending', 1, 'now', 'now')",
            [(n, n, f"c{n}@example.com", f"t{n}") for n in range(1, 4)],
        )
        conn.executemany(
            "INSERT INTO leases VALUES (?, ?, ?)",
            [
                (mail.lane_lease(lane), f"{leases.HOST}:{dead}:gone", time.time() + 600)
                for lane in {mail.lane_of(n) for n in range(1, 4)}
            ],
        )
    # When the reconciler looks, and a sender runs
    assert invoice_mail.due(store)
    from notifications.transport import Smtp

    run = invoice_mail.deliver(store, Smtp(smtp.url), settings.with_(mail_rate=0))
    # Then it took the dead sender's place at once and sent each email once
    assert run is not None and run.sent == 3
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [f"c{n}@example.com" for n in (1, 2, 3)]
    attempts = store.all("SELECT email_state, email_attempts FROM invoices")
    assert [tuple(r) for r in attempts] == [("sent", 1)] * 3
    assert not invoice_mail.due(store)


def test_a_live_paced_sender_makes_a_second_stand_back(settings, store, smtp):
    from notifications.transport import Smtp
    from worker.delivery import customers as invoice_mail
    from worker.state import mail

    # Given a paced sender (mail_rate > 0) running in another process
    assert mail.take_pacer(store, "this-host:1:first")
    # Then a second paced one stands back, so the rate stays the whole system's
    assert invoice_mail.deliver(store, Smtp(smtp.url), settings) is None
    mail.release_pacer(store, "this-host:1:first")
    assert invoice_mail.deliver(store, Smtp(smtp.url), settings) is not None
