"""Administrators' reports built as bytes are the standard library's email, to the byte
(a non-ASCII subject as encoded words that decode to the same, as for customer emails)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from hypothesis import given
from hypothesis import strategies as st
from test_email_safety import INJECTIONS, assert_headers_intact
from test_mime import EXAMPLES, TEXT, headers_and_body

from notifications import reports
from notifications.message import Attachment, build
from notifications.prepared import Prepared, prepare

ADMINS = st.lists(
    st.one_of(
        # Local parts within RFC 5321's 64 octets, as settings check (past them email
        # folds a To line with an empty one).
        st.from_regex(
            r"[a-z0-9]+([.+_-][a-z0-9]+){0,3}@[a-z0-9]{1,20}\.(org|rw)", fullmatch=True
        ).filter(lambda a: len(a.partition("@")[0]) <= 64),
        st.sampled_from(["ops@example.org", "a" * 60 + "@example.org", "ops@mail_1.example.org"]),
    ),
    min_size=1,
    max_size=4,
)
ATTACHMENTS = st.lists(
    st.builds(
        Attachment,
        filename=st.one_of(TEXT, st.just("orders.csv.errors.csv")),
        content=st.binary(max_size=300),
    ),
    max_size=2,
)


def reference(prepared: Prepared, **fields: object) -> bytes:
    """``message.build``'s bytes for the same fields, with the prepared email's boundaries
    and date (both differ from run to run)."""
    msg = build(**fields)  # type: ignore[arg-type]
    boundaries = re.findall(rb'boundary="([^"]+)"', prepared.data)
    date = re.search(rb"^Date: (.*)$", prepared.data, re.MULTILINE)
    assert date
    msg.replace_header("Date", date.group(1).decode())
    if msg.get_content_type() == "multipart/mixed":
        outer, inner = boundaries
        msg.set_boundary(outer.decode())
        msg.get_payload()[0].set_boundary(inner.decode())
    else:
        msg.set_boundary(boundaries[0].decode())
    return msg.as_bytes()


@EXAMPLES
@given(
    admins=ADMINS,
    subject=TEXT,
    text=TEXT,
    html=TEXT,
    attachments=ATTACHMENTS,
    automatic=st.booleans(),
)
def test_a_prepared_report_has_the_bytes_email_would_write(
    admins, subject, text, html, attachments, automatic
):
    fields = {
        "sender": "invoice-worker@example.org",
        "recipients": admins,
        "subject": subject,
        "text": text,
        "html": html,
        "attachments": attachments,
        "message_id": "file-7-validated",
        "automatic": automatic,
    }
    prepared = prepare(**fields)  # type: ignore[arg-type]
    expected = reference(prepared, **fields)
    got_headers, got_body = headers_and_body(prepared.data)
    want_headers, want_body = headers_and_body(expected)
    assert got_body == want_body
    assert [n for n, _ in got_headers] == [n for n, _ in want_headers]
    for (name, got), (_, want) in zip(got_headers, want_headers, strict=True):
        if got != want:
            assert name == "Subject" and "=?utf-8?b?" in got, (name, got, want)
    ours = message_from_bytes(prepared.data, policy=policy.default)
    theirs = message_from_bytes(expected, policy=policy.default)
    assert str(ours["Subject"]) == str(theirs["Subject"])
    assert prepared.to == str(prepared.message["To"])
    assert prepared.subject == str(prepared.message["Subject"])


def test_a_report_to_an_address_email_must_write_is_still_one_email_with_every_part():
    prepared = prepare(
        sender="invoice-worker@example.org",
        recipients=["ops@mail_1.example.org", "ops@example.org"],
        subject="[invoice-worker] orders.csv: validated",
        text="2 of 3 rows valid",
        html="<p>2 of 3 rows valid</p>",
        attachments=[Attachment("orders.csv.errors.csv", b"line_number,errors\n3,REQUIRED\n")],
    )
    assert prepared.to == "ops@mail_1.example.org, ops@example.org"
    assert prepared.get_body(("plain",)).get_content() == "2 of 3 rows valid\n"
    [attachment] = prepared.iter_attachments()
    assert attachment.get_filename() == "orders.csv.errors.csv"
    assert attachment.get_content() == "line_number,errors\n3,REQUIRED\n"


def test_no_header_can_be_added_through_a_file_name_in_a_prepared_report():
    for attempt in INJECTIONS:
        msg = reports.rejection(
            reports.Envelope("invoice-worker@example.org", ["ops@example.org"]),
            {"id": 7, "name": f"{attempt}.csv", "kind": "invoices"},
            code="TOO_MANY_ERRORS",
            message=attempt,
            line=None,
            result_name=attempt,
            rejected=1,
            errors_csv=b"line_number,merchant_reference,errors\n2,INV-1,REQUIRED(amount)\n",
        )
        assert isinstance(msg, Prepared)
        assert_headers_intact(msg.message)
