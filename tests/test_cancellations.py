"""Cancellation files through the real pipeline: every code with its column, batches
released, cancelled invoices neither paid nor batched, the signed ``invoice.cancelled``
webhook on a real HTTP server, the administrators' email over real SMTP."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from helpers import (
    WEBHOOK_SECRET,
    batch_request,
    batch_results,
    cli,
    create_invoices,
    invoice_csv,
    invoice_row,
    payment_csv,
    payment_row,
    read_results,
    run_file,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sheetfiles import rows_of, xlsx
from test_payments import signature_ok, statuses

from notifications import cancellation_reports
from notifications.reports import Envelope
from worker.intake import claim
from worker.kinds import KINDS
from worker.pipeline import stages
from worker.pipeline.runtime import Runtime
from worker.state import FileState, files
from worker.state.leases import Lease

HEADER = ("invoice_number", "merchant_reference", "reason")

# The pipeline keeps running between hypothesis examples (see test_properties.py).
pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]


def cancel_row(number: object = "", reference: str = "", reason: str = "") -> dict[str, str]:
    return {"invoice_number": str(number), "merchant_reference": reference, "reason": reason}


def cancel_csv(rows: list[dict[str, str]], header: tuple[str, ...] = HEADER) -> str:
    return invoice_csv(rows, header)


def outcomes(settings, name: str) -> list[tuple[str, str]]:
    return [
        (r["status"], r["errors"]) for r in read_results(settings.outbox / f"{name}.results.csv")
    ]


def make_batch(h, settings, tx: str, numbers: list[int], name: str) -> int:
    run_file(h, name, json.dumps(batch_request(tx, numbers)))
    [entry] = batch_results(settings, name)
    assert entry["status"] == "CREATED", entry
    return int(entry["data"]["invoiceNumber"])


def test_cancelling_an_invoice_marks_it_cancelled_and_notifies_the_merchant(
    merchant, settings, store, webhook_receiver
):
    # Given an invoice
    [number] = create_invoices(merchant, [invoice_row(1, merchant_reference="ORDER-1")])
    # When a cancellation file names it by its number, with a reason
    file = run_file(
        merchant, "cancel.csv", cancel_csv([cancel_row(number, reason="customer left")])
    )
    # Then the row is cancelled, its merchant reference filled in, and the invoice CANCELLED
    assert (file.kind, file.state, file.created) == ("cancellations", "processed", 1)
    [result] = read_results(settings.outbox / "cancel.csv.results.csv")
    assert result == {
        "line_number": "2",
        "invoice_number": str(number),
        "merchant_reference": "ORDER-1",
        "status": "CANCELLED",
        "errors": "",
    }
    assert statuses(store, number) == ["CANCELLED"]
    # And the merchant got one signed invoice.cancelled
    [hook] = webhook_receiver.wait(1)
    assert signature_ok(hook)
    assert hook["headers"]["X-Invoice-Worker-Event"] == "invoice.cancelled"
    body = json.loads(hook["body"])
    assert body["event"] == "invoice.cancelled"
    assert body["cancellation"]["reason"] == "customer left"
    data = body["data"]
    assert (data["invoiceNumber"], data["paymentStatus"], data["merchantReference"]) == (
        str(number),
        "CANCELLED",
        "ORDER-1",
    )
    # And the administrators hear of it
    merchant.wait_mail()
    [mail] = [p for p in settings.mail.glob("*-processed.eml") if "cancel.csv" in p.read_text()]
    assert "1 invoices cancelled" in mail.read_text()


def test_each_cancellation_code_names_its_column(pipeline, settings, store):
    # Given open, paid, cancelled and batched invoices
    open_a, open_b, paid, gone, child_a, child_b, by_ref = create_invoices(
        pipeline,
        [
            invoice_row(1),
            invoice_row(2),
            invoice_row(3),
            invoice_row(4),
            invoice_row(5),
            invoice_row(6),
            invoice_row(7, merchant_reference="PAID-BY-REF"),
        ],
    )
    run_file(pipeline, "pay.csv", payment_csv([payment_row("P-1", paid, 10000)]))
    run_file(pipeline, "pay2.csv", payment_csv([payment_row("P-2", by_ref, 10000)]))
    run_file(pipeline, "first.csv", cancel_csv([cancel_row(gone)]))
    make_batch(pipeline, settings, "TX-1", [child_a, child_b], "batch.json")
    # When one file breaks each rule
    cases = [
        (cancel_row(reason="names no invoice"), "REQUIRED(invoice_number)"),
        (cancel_row(999_999), "INVOICE_NOT_FOUND(invoice_number)"),
        (cancel_row("INV-1"), "INVOICE_NOT_FOUND(invoice_number)"),
        (cancel_row(reference="NO-SUCH-REF"), "INVOICE_NOT_FOUND(merchant_reference)"),
        (cancel_row(open_a, "REF-000002"), "REFERENCE_MISMATCH(merchant_reference)"),
        (cancel_row(paid), "ALREADY_PAID(invoice_number)"),
        (cancel_row(reference="PAID-BY-REF"), "ALREADY_PAID(merchant_reference)"),
        (cancel_row(gone), "ALREADY_CANCELLED(invoice_number)"),
        (cancel_row(child_a), "INVOICE_IN_BATCH(invoice_number)"),
        (cancel_row(open_b, reason="r" * 151), "TOO_LONG(reason)"),
        (cancel_row(open_a, "REF-000001", "r" * 150), ""),
        (cancel_row(reference="REF-000001"), "DUPLICATE_IN_FILE(merchant_reference)"),
        (cancel_row(f"00{open_a}"), "DUPLICATE_IN_FILE(invoice_number)"),
    ]
    file = run_file(pipeline, "cancel.csv", cancel_csv([row for row, _ in cases]))
    # Then every row but one is rejected with its code and column
    assert file.created == 1
    assert outcomes(settings, "cancel.csv") == [
        ("CANCELLED" if code == "" else "REJECTED", code) for _, code in cases
    ]
    assert statuses(store, open_a, open_b, paid, gone, child_a) == [
        "CANCELLED",
        "NEW",
        "PAID",
        "CANCELLED",
        "NEW",
    ]


def test_cancelling_a_batch_releases_its_invoices_to_be_paid_alone_or_batched_again(
    merchant, settings, store, webhook_receiver
):
    # Given a batch of two invoices, and a third invoice
    a, b, c = create_invoices(merchant, [invoice_row(1), invoice_row(2), invoice_row(3)])
    batch = make_batch(merchant, settings, "TX-1", [a, b], "batch.json")
    # When the batch is cancelled
    file = run_file(merchant, "cancel.csv", cancel_csv([cancel_row(batch, reason="redo")]))
    # Then the batch is CANCELLED and its invoices are open and in no batch
    assert file.created == 1
    assert outcomes(settings, "cancel.csv") == [("CANCELLED", "")]
    rows = store.all(
        "SELECT invoice_number, status, batch_number FROM invoices WHERE invoice_number IN"
        " (?, ?, ?) ORDER BY invoice_number",
        (a, b, batch),
    )
    assert [tuple(r) for r in rows] == [
        (a, "NEW", None),
        (b, "NEW", None),
        (batch, "CANCELLED", None),
    ]
    # And the merchant heard of the batch only, naming the invoices it held
    [hook] = webhook_receiver.wait(1)
    merchant.wait_mail()
    time.sleep(1.5)  # two reconciler rounds: any other notification would have gone out
    assert len(webhook_receiver.received()) == 1
    data = json.loads(hook["body"])["data"]
    assert (data["invoiceNumber"], data["type"], data["paymentStatus"]) == (
        str(batch),
        "BATCH",
        "CANCELLED",
    )
    assert data["childInvoices"] == [str(a), str(b)]
    # And the email tells of the batch and its released invoices
    [mail] = [p for p in settings.mail.glob("*-processed.eml") if "cancel.csv" in p.read_text()]
    text = mail.read_text()
    assert "Batch invoices cancelled:     1" in text
    assert "Invoices released from them:  2" in text
    # And a released invoice can be paid alone, the other batched again
    run_file(merchant, "pay.csv", payment_csv([payment_row("P-1", a, 10000)]))
    assert outcomes(settings, "pay.csv") == [("APPLIED", "")]
    make_batch(merchant, settings, "TX-2", [b, c], "again.json")


def test_a_cancelled_invoice_cannot_be_paid_or_batched(pipeline, settings, store):
    # Given a cancelled invoice, a paid one and an open one
    gone, paid, open_ = create_invoices(pipeline, [invoice_row(1), invoice_row(2), invoice_row(3)])
    run_file(pipeline, "cancel.csv", cancel_csv([cancel_row(gone)]))
    run_file(pipeline, "pay.csv", payment_csv([payment_row("P-1", paid, 10000)]))
    # When a payment file pays the cancelled one
    run_file(pipeline, "pay2.csv", payment_csv([payment_row("P-2", gone, 10000)]))
    # Then it is rejected, and nothing is paid
    assert outcomes(settings, "pay2.csv") == [("REJECTED", "INVOICE_CANCELLED(invoice_number)")]
    assert statuses(store, gone) == ["CANCELLED"]
    # And a batch request naming it is a 400, reported after BAD_INVOICES_PAID
    run_file(pipeline, "batch.json", json.dumps(batch_request("TX-1", [gone, paid, open_])))
    [entry] = batch_results(settings, "batch.json")
    assert (entry["status"], entry["httpStatus"]) == ("REJECTED", 400)
    assert [(e["code"], e["invoiceNumbers"]) for e in entry["errors"]] == [
        ("BAD_INVOICES_PAID", [str(paid)]),
        ("BAD_INVOICES_CANCELLED", [str(gone)]),
    ]


def test_a_row_after_its_batch_was_cancelled_in_the_same_file_may_cancel_a_released_invoice(
    pipeline, settings, store
):
    a, b = create_invoices(pipeline, [invoice_row(1), invoice_row(2)])
    batch = make_batch(pipeline, settings, "TX-1", [a, b], "batch.json")
    rows = [cancel_row(a), cancel_row(batch), cancel_row(b)]
    run_file(pipeline, "cancel.csv", cancel_csv(rows))
    # The first row came before the batch was cancelled; the last one after
    assert outcomes(settings, "cancel.csv") == [
        ("REJECTED", "INVOICE_IN_BATCH(invoice_number)"),
        ("CANCELLED", ""),
        ("CANCELLED", ""),
    ]
    assert statuses(store, a, b, batch) == ["NEW", "CANCELLED", "CANCELLED"]
    released = store.one("SELECT released FROM cancellations WHERE invoice_number = ?", (batch,))
    assert json.loads(released[0]) == [str(a), str(b)]


def test_chunks_give_the_same_answers_as_one_chunk_and_a_repeat_across_them_is_a_duplicate(
    make_pipeline, settings, store
):
    # Given chunks of two rows, and invoices named in one chunk and again in a later one
    h = make_pipeline(settings.with_(chunk_rows=2))
    a, b, c = create_invoices(h, [invoice_row(1), invoice_row(2), invoice_row(3)])
    batch = make_batch(h, settings, "TX-1", [b, c], "batch.json")
    rows = [cancel_row(a), cancel_row(batch), cancel_row(b), cancel_row(reference="REF-000001")]
    run_file(h, "cancel.csv", cancel_csv(rows))
    assert outcomes(settings, "cancel.csv") == [
        ("CANCELLED", ""),
        ("CANCELLED", ""),
        ("CANCELLED", ""),
        ("REJECTED", "DUPLICATE_IN_FILE(merchant_reference)"),
    ]


def test_results_are_formula_safe_and_the_file_may_name_invoices_by_reference_only(
    pipeline, settings
):
    [number] = create_invoices(pipeline, [invoice_row(1, merchant_reference="ORDER-9")])
    rows = [{"merchant_reference": "ORDER-9"}, {"merchant_reference": "=HYPERLINK(1)"}]
    run_file(pipeline, "c.csv", invoice_csv(rows, ("merchant_reference",)))
    assert read_results(settings.outbox / "c.csv.results.csv") == [
        {
            "line_number": "2",
            "invoice_number": str(number),
            "merchant_reference": "ORDER-9",
            "status": "CANCELLED",
            "errors": "",
        },
        {
            "line_number": "3",
            "invoice_number": "",
            "merchant_reference": "'=HYPERLINK(1)",
            "status": "REJECTED",
            "errors": "INVOICE_NOT_FOUND(merchant_reference)",
        },
    ]


def test_an_invoice_file_missing_columns_is_never_taken_for_cancellations(pipeline, settings):
    [number] = create_invoices(pipeline, [invoice_row(1)])
    header = ("merchant_reference", "amount", "currency")
    file = run_file(pipeline, "broken.csv", invoice_csv([invoice_row(1)], header))
    assert (file.state, file.error_code) == ("rejected", "MISSING_COLUMN")
    assert statuses(pipeline.store, number) == ["NEW"]


def test_a_spreadsheet_cancels_like_a_csv(pipeline, settings, store):
    [number] = create_invoices(pipeline, [invoice_row(1)])
    sheet = rows_of(HEADER, [{"invoice_number": number, "reason": "sheet"}])
    file = run_file(pipeline, "cancel.xlsx", xlsx(sheet))
    assert (file.kind, file.created) == ("cancellations", 1)
    assert statuses(store, number) == ["CANCELLED"]


def test_the_administrators_get_the_report_over_smtp_with_the_errors_attached(
    make_pipeline, settings, smtp
):
    h = make_pipeline(settings.with_(smtp_url=smtp.url))
    [number] = create_invoices(h, [invoice_row(1)])
    run_file(h, "cancel.csv", cancel_csv([cancel_row(number), cancel_row(42, reason="x" * 200)]))
    [mail] = smtp.wait_for(1, Subject="cancel.csv")
    assert mail["Subject"] == "[invoice-worker] cancel.csv: 1 invoices cancelled, 1 rejected"
    assert mail["To"] == "admin@localhost"
    text = mail.get_body(("plain",)).get_content()
    assert "$100.00" in text
    assert "INVOICE_NOT_FOUND(invoice_number); TOO_LONG(reason)" in text
    assert "<table" in mail.get_body(("html",)).get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "cancel.csv.errors.csv"
    rows = list(csv.reader(io.StringIO(attachment.get_content())))
    assert rows == [
        ["line_number", "invoice_number", "merchant_reference", "errors"],
        ["3", "42", "", "INVOICE_NOT_FOUND(invoice_number);TOO_LONG(reason)"],
    ]


def test_the_report_escapes_what_came_from_the_file():
    script = "<script>alert(1)</script>"
    msg = cancellation_reports.cancellations(
        Envelope(sender="worker@example.org", admins=["admin@example.org"]),
        {"id": 1, "name": f"{script}.csv", "kind": "cancellations"},
        cancelled=0,
        rejected=1,
        batches_cancelled=0,
        invoices_released=0,
        first_errors=[(2, script, "INVOICE_NOT_FOUND(merchant_reference)")],
        currency_totals=[],
        result_name=script,
    )
    html = msg.get_body(("html",)).get_content()
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "cancellation file" in msg.get_body(("plain",)).get_content()
    assert "\n" not in msg["Subject"]


def test_processing_run_twice_cancels_records_and_notifies_once(settings, store):
    # Given the real stages in this process, an invoice, and a cancellation file of it
    rt = Runtime(settings=settings, store=store, kinds=KINDS)

    def claimed(name: str, text: str) -> int:
        (settings.inbox / name).write_text(text)
        file_id = claim.claim(settings, store, settings.inbox / name)
        assert file_id is not None
        return file_id

    assert stages.advance(rt, claimed("i.csv", invoice_csv([invoice_row(1)]))) == "processed"
    number = store.one("SELECT invoice_number FROM invoices")[0]
    lease = Lease(store, claimed("c.csv", cancel_csv([cancel_row(number)])), 30)
    lease.take()
    assert stages.run(rt, lease, pause_at=frozenset({FileState.PROCESSING})) == "processing"
    # When its processing runs twice (a redelivered job; a restart after a crash)
    kind = KINDS.get("cancellations")
    for _ in range(2):
        kind.process(rt, files.get(store, lease.file_id), lambda: None)
    # Then it finishes, and nothing was cancelled, recorded or notified twice
    assert stages.run(rt, lease) == "processed"
    assert outcomes(settings, "c.csv") == [("CANCELLED", "")]
    assert store.one("SELECT count(*) FROM cancellations")[0] == 1
    assert store.one("SELECT count(*) FROM webhooks WHERE event = 'invoice.cancelled'")[0] == 1
    assert files.get(store, lease.file_id).created == 1


def test_a_customer_email_or_sms_not_yet_sent_is_withheld(settings, store):
    # Given an invoice asking for email and SMS, processed with no sender running
    rt = Runtime(settings=settings, store=store, kinds=KINDS)
    row = invoice_row(1, notification_type="EMAIL,SMS", customer_phone="+250788000000")
    (settings.inbox / "i.csv").write_text(invoice_csv([row]))
    assert stages.advance(rt, claim.claim(settings, store, settings.inbox / "i.csv")) == "processed"
    assert tuple(store.one("SELECT email_state, sms_state FROM invoices")) == ("pending", "pending")
    # When it is cancelled before they go out
    (settings.inbox / "c.csv").write_text(
        invoice_csv([{"merchant_reference": "REF-000001"}], ("merchant_reference",))
    )
    assert stages.advance(rt, claim.claim(settings, store, settings.inbox / "c.csv")) == "processed"
    # Then neither is sent: no payment link for a cancelled invoice reaches the customer
    assert tuple(store.one("SELECT status, email_state, sms_state FROM invoices")) == (
        "CANCELLED",
        "withheld",
        "withheld",
    )
    assert store.one("SELECT count(*) FROM sms_pending")[0] == 0


def test_template_and_validate_through_the_command_line(tmp_path):
    made = cli("template", "cancellations", home=tmp_path)
    assert made.returncode == 0, made.stderr
    header, example = list(csv.reader(io.StringIO(made.stdout)))
    assert header == list(HEADER) and len(example) == 3
    rows = [cancel_row(reason="which one?"), cancel_row(7, reason="r" * 151)]
    (tmp_path / "c.csv").write_text(cancel_csv(rows))
    checked = cli("validate", "c.csv", home=tmp_path)
    assert checked.returncode == 1, checked.stderr
    assert "c.csv:2: invoice_number: REQUIRED" in checked.stdout
    assert "c.csv:3: invoice_number: INVOICE_NOT_FOUND" in checked.stdout
    assert "c.csv:3: reason: TOO_LONG" in checked.stdout
    assert "cancellations file, 2 rows, 0 valid, 2 with errors" in checked.stdout


PROPERTY = hsettings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(
    order=st.lists(st.sampled_from(["cancel", "pay", "cancel-ref", "pay-twice"]), max_size=6),
    same_file=st.booleans(),
)
def test_cancelling_then_paying_never_marks_an_invoice_paid(
    pipeline, settings, store, order, same_file
):
    # Given a fresh invoice, cancelled
    count = store.one("SELECT count(*) AS n FROM files")["n"]
    reference = f"PROP-{count:05d}"
    [number] = create_invoices(
        pipeline, [invoice_row(count, merchant_reference=reference)], f"i{count}.csv"
    )
    run_file(pipeline, f"c{count}.csv", cancel_csv([cancel_row(number)]))
    # When any mix of payments and repeated cancellations follows, in one file or several
    pays = [
        payment_row(f"PAY-{count}-{i}", number, 10000)
        for i, step in enumerate(order)
        if step.startswith("pay")
    ]
    cancels = [cancel_row(reference=reference) for step in order if step.startswith("cancel")]
    if same_file and pays:
        run_file(pipeline, f"p{count}.csv", payment_csv(pays))
    else:
        for i, row in enumerate(pays):
            run_file(pipeline, f"p{count}-{i}.csv", payment_csv([row]))
    if cancels:
        run_file(pipeline, f"c{count}-again.csv", cancel_csv(cancels))
    # Then the invoice stays cancelled, and no payment of it was recorded
    assert statuses(store, number) == ["CANCELLED"]
    assert store.one("SELECT count(*) FROM payments WHERE invoice_number = ?", (number,))[0] == 0


def test_the_payment_webhook_still_names_its_event(merchant, webhook_receiver):
    [number] = create_invoices(merchant, [invoice_row(1)])
    run_file(merchant, "pay.csv", payment_csv([payment_row("P-1", number, 10000)]))
    [hook] = webhook_receiver.wait(1)
    assert hook["headers"]["X-Invoice-Worker-Event"] == "invoice.paid"
    assert WEBHOOK_SECRET and signature_ok(hook)
