"""Payment files through the real pipeline: every code with its column, rules 7, 8 and 9,
and the merchant's signed webhook on a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email import message_from_bytes, policy

import pytest
from helpers import (
    WEBHOOK_SECRET,
    batch_request,
    batch_results,
    create_invoices,
    invoice_row,
    payment_csv,
    payment_row,
    read_results,
    run_file,
)

pytestmark = pytest.mark.backends


def signature_ok(request: dict) -> bool:
    """How a merchant checks a notification (the README's recipe)."""
    expected = (
        "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, request["headers"]["X-Invoice-Worker-Signature"])


def statuses(store, *numbers: int) -> list[str]:
    return [
        store.one("SELECT status FROM invoices WHERE invoice_number = ?", (n,))["status"]
        for n in numbers
    ]


def test_paying_an_invoice_marks_it_paid_and_notifies_the_merchant(
    merchant, settings, store, webhook_receiver
):
    # Given an invoice of 100.00 USD
    [number] = create_invoices(merchant, [invoice_row(1, merchant_reference="ORDER-1")])
    # When a payment file pays it in full
    rows = [payment_row("PAY-1", number, 10000, paid_at="2026-03-01T12:00:00+02:00")]
    file = run_file(merchant, "payments.csv", payment_csv(rows))
    # Then the row is applied and the invoice paid
    assert file.state == "processed" and file.created == 1
    [result] = read_results(settings.outbox / "payments.csv.results.csv")
    assert result == {
        "line_number": "2",
        "payment_reference": "PAY-1",
        "invoice_number": str(number),
        "status": "APPLIED",
        "errors": "",
    }
    invoice = store.one("SELECT status, paid_at FROM invoices WHERE invoice_number = ?", (number,))
    assert (invoice["status"], invoice["paid_at"]) == ("PAID", "2026-03-01T10:00:00Z")
    # And the merchant got one signed notification of that invoice
    [hook] = webhook_receiver.wait(1)
    assert hook["path"] == "/hooks/invoice-worker"
    assert hook["headers"]["Content-Type"] == "application/json"
    assert signature_ok(hook)
    body = json.loads(hook["body"])
    assert body["event"] == "invoice.paid"
    assert body["payment"] == {
        "paymentReference": "PAY-1",
        "amount": 10000,
        "currency": "USD",
        "paidAt": "2026-03-01T10:00:00Z",
    }
    data = body["data"]
    assert (data["invoiceNumber"], data["type"], data["paymentStatus"]) == (
        str(number),
        "SINGLE",
        "PAID",
    )
    assert data["merchantReference"] == "ORDER-1"
    # And the administrators hear of it, with totals per currency
    merchant.wait_mail()
    [mail] = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in settings.mail.glob("*-processed.eml")
        if "payments.csv" in p.read_text(errors="replace")
    ]
    assert "1 payments applied" in mail["Subject"]
    assert "$100.00" in mail.get_body(("plain",)).get_content()
    # A report to staff: no vacation replies to it (RFC 3834)
    assert mail["Auto-Submitted"] == "auto-generated"


def test_each_payment_code_names_its_column(pipeline, settings, store):
    # Given single invoices, a batch of two, a paid invoice and a used payment reference
    single, other, child_a, child_b, paid, rwf = create_invoices(
        pipeline,
        [
            invoice_row(1),
            invoice_row(2, request_expiry_date="2030-06-01T00:00:00+00:00"),
            invoice_row(3),
            invoice_row(4),
            invoice_row(5),
            invoice_row(6, amount="2000", currency="RWF"),
        ],
    )
    run_file(pipeline, "batch.json", json.dumps(batch_request("TX-1", [child_a, child_b])))
    [entry] = batch_results(settings, "batch.json")
    batch = int(entry["data"]["invoiceNumber"])
    run_file(pipeline, "first.csv", payment_csv([payment_row("USED-1", paid, 10000)]))
    # When one payment file breaks each rule once
    cases = [
        (payment_row("P-01", 999_999, 100), "INVOICE_NOT_FOUND(invoice_number)"),
        (payment_row("P-02", child_a, 10000), "INVOICE_IN_BATCH(invoice_number)"),
        (payment_row("P-03", batch, 19999), "PARTIAL_PAYMENT_NOT_ALLOWED(amount)"),
        (payment_row("P-04", single, 10001), "AMOUNT_MISMATCH(amount)"),
        (payment_row("P-05", rwf, 2000, currency="USD"), "CURRENCY_MISMATCH(currency)"),
        (payment_row("P-06", paid, 10000), "ALREADY_PAID(invoice_number)"),
        (
            payment_row("P-07", other, 10000, paid_at="2030-06-02T00:00:00Z"),
            "INVOICE_EXPIRED(invoice_number)",
        ),
        (payment_row("USED-1", single, 10000), "DUPLICATE_PAYMENT_REFERENCE(payment_reference)"),
        (payment_row("", single, 10000), "REQUIRED(payment_reference)"),
        (payment_row("P" * 65, single, 10000), "TOO_LONG(payment_reference)"),
        (payment_row("P 10", single, 10000), "INVALID_FORMAT(payment_reference)"),
        (payment_row("P-11", "INV-1", 10000), "INVALID_FORMAT(invoice_number)"),
        (payment_row("P-12", single, "100.00"), "INVALID_AMOUNT(amount)"),
        (payment_row("P-13", single, 10000, currency="XYZ"), "INVALID_CURRENCY(currency)"),
        (payment_row("P-14", single, 10000, paid_at="yesterday"), "INVALID_DATE(paid_at)"),
        (payment_row("P-15", single, ""), "REQUIRED(amount)"),
    ]
    file = run_file(pipeline, "payments.csv", payment_csv([row for row, _ in cases]))
    # Then every row is rejected with its code and column, and nothing is paid
    assert file.created == 0
    results = read_results(settings.outbox / "payments.csv.results.csv")
    assert [(r["status"], r["errors"]) for r in results] == [
        ("REJECTED", code) for _, code in cases
    ]
    assert statuses(store, single, other, child_a, batch, rwf) == ["NEW"] * 5
    assert store.one("SELECT count(*) AS n FROM payments")["n"] == 1


def test_a_row_can_break_rules_in_several_columns(pipeline, settings):
    [rwf] = create_invoices(pipeline, [invoice_row(1, amount="2000", currency="RWF")])
    run_file(pipeline, "p.csv", payment_csv([payment_row("", rwf, 1, currency="USD")]))
    [result] = read_results(settings.outbox / "p.csv.results.csv")
    assert result["errors"] == "REQUIRED(payment_reference);CURRENCY_MISMATCH(currency)"


def test_rule_9_paying_a_batch_pays_its_invoices_and_notifies_once_for_the_batch(
    merchant, settings, store, webhook_receiver
):
    # Given a batch of two invoices (100.00 + 25.50 USD)
    a, b = create_invoices(merchant, [invoice_row(1), invoice_row(2, amount="2550")])
    run_file(merchant, "batch.json", json.dumps(batch_request("TX-9", [a, b])))
    batch = int(batch_results(settings, "batch.json")[0]["data"]["invoiceNumber"])
    # When the batch is paid in full
    file = run_file(merchant, "pay.csv", payment_csv([payment_row("PAY-9", batch, 12550)]))
    # Then the batch and both its invoices are paid
    assert file.created == 1
    assert statuses(store, batch, a, b) == ["PAID", "PAID", "PAID"]
    # And the merchant is told of the batch only, once, with a valid signature
    [hook] = webhook_receiver.wait(1)
    merchant.wait_mail()
    time.sleep(1.5)  # two reconciler rounds: any other notification would have gone out
    assert len(webhook_receiver.received()) == 1
    assert signature_ok(hook)
    data = json.loads(hook["body"])["data"]
    assert (data["invoiceNumber"], data["type"], data["paymentStatus"]) == (
        str(batch),
        "BATCH",
        "PAID",
    )
    assert data["childInvoices"] == [str(a), str(b)]
    assert data["amount"] == 12550
    hooks = store.all("SELECT invoice_number, state FROM webhooks")
    assert [(h["invoice_number"], h["state"]) for h in hooks] == [(batch, "sent")]


def test_rule_7_a_linked_invoice_cannot_be_paid_on_its_own_even_after_its_batch(
    pipeline, settings, store
):
    a, b = create_invoices(pipeline, [invoice_row(1), invoice_row(2)])
    run_file(pipeline, "batch.json", json.dumps(batch_request("TX-7", [a, b])))
    batch = int(batch_results(settings, "batch.json")[0]["data"]["invoiceNumber"])
    rows = [
        payment_row("PAY-A", a, 10000),
        payment_row("PAY-B", batch, 20000),
        payment_row("PAY-C", b, 10000),
    ]
    run_file(pipeline, "pay.csv", payment_csv(rows))
    results = read_results(settings.outbox / "pay.csv.results.csv")
    assert [(r["status"], r["errors"]) for r in results] == [
        ("REJECTED", "INVOICE_IN_BATCH(invoice_number)"),
        ("APPLIED", ""),
        ("REJECTED", "INVOICE_IN_BATCH(invoice_number)"),
    ]


def test_a_repeated_payment_reference_is_a_duplicate_and_changes_nothing(pipeline, settings, store):
    # Given a payment already applied under PAY-1
    a, b, c = create_invoices(pipeline, [invoice_row(1), invoice_row(2), invoice_row(3)])
    run_file(pipeline, "first.csv", payment_csv([payment_row("PAY-1", a, 10000)]))
    before = {
        "invoices": [dict(r) for r in store.all("SELECT * FROM invoices ORDER BY invoice_number")],
        "payments": [dict(r) for r in store.all("SELECT * FROM payments")],
        "webhooks": [dict(r) for r in store.all("SELECT * FROM webhooks")],
    }
    # When a later file uses PAY-1 again, and repeats PAY-2 within itself
    rows = [
        payment_row("PAY-1", b, 10000),
        payment_row("PAY-2", c, 10000),
        payment_row("PAY-2", b, 10000),
    ]
    run_file(pipeline, "second.csv", payment_csv(rows))
    # Then both repeats are DUPLICATE_PAYMENT_REFERENCE and only the new reference pays
    results = read_results(settings.outbox / "second.csv.results.csv")
    dup = "DUPLICATE_PAYMENT_REFERENCE(payment_reference)"
    assert [(r["status"], r["errors"]) for r in results] == [
        ("REJECTED", dup),
        ("APPLIED", ""),
        ("REJECTED", dup),
    ]
    assert statuses(store, a, b, c) == ["PAID", "NEW", "PAID"]
    assert (
        store.one("SELECT invoice_number FROM payments WHERE payment_reference = 'PAY-1'")[0] == a
    )
    after_b = store.one("SELECT * FROM invoices WHERE invoice_number = ?", (b,))
    assert dict(after_b) == next(i for i in before["invoices"] if i["invoice_number"] == b)
    assert [
        dict(r) for r in store.all("SELECT * FROM payments WHERE payment_reference = 'PAY-1'")
    ] == before["payments"]
    assert store.one("SELECT count(*) AS n FROM webhooks WHERE key = 'payment:PAY-1'")["n"] == 1


def test_two_payments_of_one_invoice_in_one_file_pay_it_once(pipeline, settings, store):
    [a] = create_invoices(pipeline, [invoice_row(1)])
    rows = [
        payment_row("PAY-1", a, 5000),  # partial: rejected, does not pay
        payment_row("PAY-2", a, 10000),
        payment_row("PAY-3", a, 10000),
    ]
    run_file(pipeline, "pay.csv", payment_csv(rows))
    results = read_results(settings.outbox / "pay.csv.results.csv")
    assert [(r["status"], r["errors"]) for r in results] == [
        ("REJECTED", "PARTIAL_PAYMENT_NOT_ALLOWED(amount)"),
        ("APPLIED", ""),
        ("REJECTED", "ALREADY_PAID(invoice_number)"),
    ]
    assert store.one("SELECT count(*) AS n FROM payments")["n"] == 1


def test_result_cells_from_the_file_are_formula_safe(pipeline, settings):
    run_file(pipeline, "p.csv", payment_csv([payment_row("=HYPERLINK(1)", "@SUM(A1)", 1)]))
    [result] = read_results(settings.outbox / "p.csv.results.csv")
    assert result["payment_reference"] == "'=HYPERLINK(1)"
    assert result["invoice_number"] == "'@SUM(A1)"
