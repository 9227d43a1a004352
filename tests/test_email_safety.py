"""Nothing from a file can add or break a header, or run in an email's HTML."""

from __future__ import annotations

import csv
import io
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from helpers import invoice_csv, invoice_row, read_results

from notifications import reports
from notifications.customers import Invoice, Merchant, invoice_email
from notifications.reports import Envelope

SCRIPT = "<script>alert(1)</script>"
ENVELOPE = Envelope(sender="worker@example.org", admins=["admin@example.org"])
SINGLE_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")
INJECTIONS = [
    "Eve\r\nBcc: evil@example.com",
    "Eve\nBcc: evil@example.com",
    "Eve\rBcc: evil@example.com",
    "=?utf-8?q?Eve=0D=0ABcc:_evil@example.com?=",
    "=?utf-8?b?RXZlDQpCY2M6IGV2aWxAZXhhbXBsZS5jb20=?=",
    "Eve\u2028Bcc: evil@example.com",
    "Eve\x00\x0bBcc: evil@example.com",
]


def invoice(**fields: object) -> Invoice:
    values: dict[str, object] = {
        "number": 100000000001,
        "email": "ada@example.com",
        "name": "Ada",
        "language": "en",
        "amount": 10000,
        "currency": "USD",
        "expires_at": "2030-01-01T00:00:00.000000Z",
        "description": "Parts",
        "link": "https://pay.example.com/pay/abc",
    }
    values.update(fields)
    return Invoice(**values)  # type: ignore[arg-type]


def on_the_wire(msg: EmailMessage) -> EmailMessage:
    """What a receiver parses: the message's bytes, read back."""
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_headers_intact(msg: EmailMessage) -> None:
    wire = on_the_wire(msg)
    assert "Bcc" not in wire and "Cc" not in wire
    for name in SINGLE_HEADERS:
        assert len(wire.get_all(name) or []) == 1, name
    # The text may stay in a display name, quoted; it can never become an address.
    for name in ("To", "From"):
        for address in wire[name].addresses:
            assert address.addr_spec != "evil@example.com"
            assert "\n" not in address.display_name and "\r" not in address.display_name


def every_email(text: str) -> list[EmailMessage]:
    """Each email the worker sends, with ``text`` in every field that comes from a file."""
    file = {"id": 7, "name": f"{text}.csv", "kind": "invoices"}
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [("line_number", "merchant_reference", "errors"), (2, text, "REQUIRED(amount)")]
    )
    errors_csv = buffer.getvalue().encode()
    return [
        reports.validation(
            ENVELOPE,
            file,
            rows=3,
            valid=2,
            rejected=1,
            first_errors=[(2, text, "REQUIRED(amount)")],
            unknown_columns=[text],
            next_step=text,
            errors_csv=errors_csv,
        ),
        reports.processing(
            ENVELOPE,
            file,
            created=2,
            rejected=1,
            currency_totals=[("USD", 2, 20000)],
            result_name=text,
            emails=2,
            sms=1,
        ),
        reports.rejection(
            ENVELOPE,
            file,
            code="TOO_MANY_ERRORS",
            message=text,
            line=None,
            result_name=text,
            rejected=1,
            errors_csv=errors_csv,
        ),
        reports.stalled(ENVELOPE, file, state="processing", error=text),
        reports.bounces(
            ENVELOPE,
            file,
            sent=1,
            failed=1,
            first_failures=[(2, text, "x@example.com", text)],
            failures_csv=errors_csv,
        ),
        *(
            invoice_email(
                Merchant(name=text, sender="billing@example.org"),
                invoice(name=text, description=text, language=language),
            )
            for language in ("en", "fr", "rw", "ar")
        ),
    ]


def test_a_script_in_every_field_is_escaped_in_every_email():
    for msg in every_email(SCRIPT):
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert "<script" not in html.lower(), msg["Subject"]
        assert "&lt;script&gt;" in html, msg["Subject"]
        assert text.strip(), "every email has a plain-text part"


def test_the_plain_text_part_shows_a_name_as_written_and_the_html_escapes_it():
    # Given an invoice to "Smith & Sons <billing>"
    msg = on_the_wire(
        invoice_email(
            Merchant("Shop", "billing@example.org"), invoice(name="Smith & Sons <billing>")
        )
    )
    # Then the text part reads as written, and only the HTML escapes it
    assert "Smith & Sons <billing>" in msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Smith &amp; Sons &lt;billing&gt;" in html and "<billing>" not in html


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_no_header_can_be_added_through_any_field(attempt):
    for msg in every_email(attempt):
        assert_headers_intact(msg)


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_a_customer_name_cannot_add_a_header(attempt):
    msg = invoice_email(Merchant("Shop", "billing@example.org"), invoice(name=attempt))
    assert_headers_intact(msg)
    assert on_the_wire(msg)["To"].addresses[0].addr_spec == "ada@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: evil@example.com",
        "ada@example.com\nBcc: evil@example.com",
        "ada@example.com, evil@example.com",
        "Ada <ada@example.com>, evil@example.com",
    ],
)
def test_a_customer_email_that_is_not_one_address_is_refused(address):
    with pytest.raises(ValueError):
        invoice_email(Merchant("Shop", "billing@example.org"), invoice(email=address))


def test_a_link_that_is_not_http_is_never_a_button():
    msg = invoice_email(Merchant("Shop", "b@example.org"), invoice(link="javascript:alert(1)"))
    html = msg.get_body(("html",)).get_content()
    assert 'href="javascript' not in html and "javascript:alert(1)" in html


def test_injections_through_a_file_reach_no_one_and_add_no_header(make_pipeline, settings, smtp):
    # Given a file whose name and fields try to add a Bcc, and a real SMTP server
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    rows = [
        invoice_row(1, notification_type="EMAIL", customer_name="Eve\r\nBcc: evil@example.com"),
        invoice_row(2, notification_type="EMAIL", customer_name=INJECTIONS[3][:40]),
        invoice_row(
            3, notification_type="EMAIL", customer_email="c3@example.com\r\nBcc: evil@example.com"
        ),
        invoice_row(4, notification_type="EMAIL", customer_name=SCRIPT, order_description=SCRIPT),
    ]
    h.drop("x\r\nBcc: evil@example.com=?utf-8?q?=0D=0A?=.csv", invoice_csv(rows))
    # When it is processed and every email sent
    h.wait_final()
    h.wait_mail()
    received = smtp.wait_for(5)  # validated, processed, three customers
    # Then nothing went to the attacker, and every message kept its own headers
    assert all("evil@example.com" not in r.rcpt_tos for r in smtp.received)
    for msg in received:
        assert_headers_intact(msg)
        html = msg.get_body(("html",)).get_content()
        assert "<script" not in html.lower()
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        "admin@localhost",
        "admin@localhost",
        "customer1@example.com",
        "customer2@example.com",
        "customer4@example.com",
    ]
    # And the row with the bad address was rejected at validation, not sent
    [validated] = smtp.to("admin@localhost")[:1]
    assert "INVALID_EMAIL(customer_email)" in validated.get_body(("plain",)).get_content()


def test_the_attachment_lists_exactly_the_rejected_rows(make_pipeline, settings, smtp):
    # Given a file with more rejected rows than the email's table shows
    h = make_pipeline(settings.with_(smtp_url=smtp.url))
    rows = [invoice_row(n) for n in range(1, 41)]
    for n in range(0, 40, 3):
        rows[n]["amount"] = "12.5"
    for n in range(1, 40, 4):
        rows[n]["currency"] = "XXY"
    rows[5]["merchant_reference"] = "=HYPERLINK(1)"
    h.drop("att.csv", invoice_csv(rows))
    h.wait_final()
    [validated] = smtp.wait_for(1, Subject="validated")
    # Then the attachment's rows are the results' rejected rows, formula-safe
    [attachment] = list(validated.iter_attachments())
    attached = list(csv.DictReader(io.StringIO(attachment.get_content())))
    results = read_results(settings.outbox / "att.csv.results.csv")
    rejected = [r for r in results if r["status"] == "REJECTED"]
    assert len(rejected) > reports.FIRST_ERRORS
    assert [(a["line_number"], a["merchant_reference"], a["errors"]) for a in attached] == [
        (r["line_number"], r["merchant_reference"], r["errors"]) for r in rejected
    ]
    assert any(a["merchant_reference"] == "'=HYPERLINK(1)" for a in attached)
    # And the email's first lines give the counts; the table shows the first errors
    text = validated.get_body(("plain",)).get_content()
    valid = len(results) - len(rejected)
    assert text.splitlines()[0] == (
        f"{valid} of 40 rows valid; {len(rejected)} rejected and skipped."
    )
    assert f"{len(rejected) - reports.FIRST_ERRORS} more in the attached att.csv.errors.csv" in (
        validated.get_body(("html",)).get_content()
    )


def test_a_file_with_too_many_errors_is_reported_with_its_errors_attached(
    make_pipeline, settings, smtp
):
    h = make_pipeline(settings.with_(smtp_url=smtp.url, max_error_rate=0.1))
    rows = [invoice_row(1), invoice_row(2, amount="x"), invoice_row(3, currency="?")]
    h.drop("t.csv", invoice_csv(rows))
    h.wait_final()
    [mail] = smtp.wait_for(1, Subject="rejected")
    assert "t.csv: rejected (TOO_MANY_ERRORS), no invoices created" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "3  REF-000002  INVALID_AMOUNT(amount)" in text
    [attachment] = list(mail.iter_attachments())
    lines = attachment.get_content().splitlines()
    assert lines[1:] == [
        "3,REF-000002,INVALID_AMOUNT(amount)",
        "4,REF-000003,INVALID_CURRENCY(currency)",
    ]


def test_emails_built_one_after_another_keep_their_own_headers():
    # Given a report with an attachment, a customer's email, and the report again: the
    # MIME headers they share are parsed once and reused
    file = {"id": 1, "name": "a.csv", "kind": "invoices"}
    errors = b"line_number,merchant_reference,errors\r\n2,A,INVALID_AMOUNT(amount)\r\n"

    def report() -> EmailMessage:
        return reports.rejection(
            ENVELOPE, file, code="TOO_MANY_ERRORS", message="m", line=None,
            result_name="a.csv.error.json", rejected=1, errors_csv=errors,
        )  # fmt: skip

    sent = [
        report(),
        invoice_email(Merchant("Shop", "billing@example.org"), invoice(language="ar")),
    ]
    sent.append(report())
    wires = [on_the_wire(m) for m in sent]
    # Then each one reads back with its own structure and headers
    first, customer, again = wires
    for wire in (first, again):
        assert wire["Auto-Submitted"] == "auto-generated"
        parts = [p.get_content_type() for p in wire.walk()]
        assert parts == [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "text/csv",
        ]
        assert next(p for p in wire.walk() if p.get_filename()).get_content() in (
            errors,
            errors.decode(),
        )
    assert "Auto-Submitted" not in customer
    assert [p.get_content_type() for p in customer.walk()][1:] == ["text/plain", "text/html"]
    # And no two share a MIME boundary
    boundaries = [p.get_boundary() for w in wires for p in w.walk() if p.is_multipart()]
    assert len(set(boundaries)) == len(boundaries)
