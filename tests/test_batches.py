"""Batch request files through the real pipeline: IremboPay's codes, fields and rule 6."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from helpers import (
    batch_request,
    batch_results,
    create_invoices,
    invoice_row,
    payment_csv,
    payment_row,
    run_file,
)

pytestmark = pytest.mark.backends

RESPONSE_FIELDS = {
    "invoiceNumber",
    "transactionId",
    "paymentAccountIdentifier",
    "paymentItems",
    "paymentStatus",
    "amount",
    "currency",
    "type",
    "createdAt",
    "updatedAt",
    "expiryAt",
    "description",
    "childInvoices",
    "language",
    "batchNumber",
    "paymentLinkUrl",
}


def codes(entry: dict) -> list[str]:
    return [e["code"] for e in entry["errors"]]


def test_a_batch_request_links_its_invoices_and_answers_201_with_every_field(
    pipeline, settings, store
):
    # Given two invoices of one currency and account
    a, b = create_invoices(
        pipeline,
        [
            invoice_row(1, amount="10000", payment_account="ACC-1", language="fr"),
            invoice_row(2, amount="2550", payment_account="ACC-1", language="fr"),
        ],
    )
    # When a batch request (IremboPay's body, one JSON object) names them
    body = batch_request("TX-1", [a, b], description="March, paid as one")
    file = run_file(pipeline, "batch.json", json.dumps(body))
    # Then the request is created with every response field
    assert file.state == "processed" and file.created == 1
    [entry] = batch_results(settings, "batch.json")
    assert (entry["transactionId"], entry["status"], entry["httpStatus"]) == (
        "TX-1",
        "CREATED",
        201,
    )
    assert entry["errors"] == []
    data = entry["data"]
    assert set(data) >= RESPONSE_FIELDS
    assert data["transactionId"] == "TX-1"
    assert data["type"] == "BATCH" and data["paymentStatus"] == "NEW"
    assert data["amount"] == 12550 and data["currency"] == "USD"
    assert data["paymentAccountIdentifier"] == "ACC-1"
    assert data["childInvoices"] == [str(a), str(b)]
    assert [i["invoiceNumber"] for i in data["paymentItems"]] == [str(a), str(b)]
    assert [i["amount"] for i in data["paymentItems"]] == [10000, 2550]
    assert data["description"] == "March, paid as one"
    assert data["language"] == "fr"
    assert data["batchNumber"] == data["invoiceNumber"]
    token = data["paymentLinkUrl"].removeprefix(settings.payment_link_base)
    assert len(token) == 32 and int(token, 16) >= 0
    for stamp in ("createdAt", "updatedAt", "expiryAt"):
        assert datetime.fromisoformat(data[stamp]).tzinfo is not None
    # And the invoices are linked to the batch invoice, which shares the invoice numbers
    batch = int(data["invoiceNumber"])
    assert batch > b
    linked = store.all("SELECT batch_number FROM invoices WHERE invoice_number IN (?, ?)", (a, b))
    assert [r["batch_number"] for r in linked] == [batch, batch]
    # And the administrators hear what was created, with totals per currency
    pipeline.wait_mail()
    [mail] = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in settings.mail.glob("*-processed.eml")
        if "batch.json" in p.read_text(errors="replace")
    ]
    assert "1 batch invoices created" in mail["Subject"]
    assert mail["Auto-Submitted"] == "auto-generated"  # a report to staff (RFC 3834)
    text = mail.get_body(("plain",)).get_content()
    assert "TX-1" in text and "$125.50" in text


def test_csv_rows_of_one_transaction_form_one_batch(pipeline, settings):
    a, b, c = create_invoices(pipeline, [invoice_row(1), invoice_row(2), invoice_row(3)])
    csv_text = (
        f"Transaction_ID;invoice_number;description\r\nTX-A;{a};first\r\nTX-B;{c};\r\nTX-A;{b};\r\n"
    )
    file = run_file(pipeline, "batches.csv", csv_text)
    assert file.state == "processed" and file.created == 2
    first, second = batch_results(settings, "batches.csv")
    assert first["transactionId"] == "TX-A" and first["lineNumbers"] == [2, 4]
    assert first["data"]["childInvoices"] == [str(a), str(b)]
    assert first["data"]["description"] == "first"
    assert second["transactionId"] == "TX-B" and second["data"]["childInvoices"] == [str(c)]


def test_json_lines_and_arrays_are_requests_in_file_order(pipeline, settings):
    a, b = create_invoices(pipeline, [invoice_row(1), invoice_row(2)])
    lines = "\n".join(json.dumps(batch_request(f"TX-{n}", [n])) for n in (a, b)) + "\n"
    run_file(pipeline, "batches.jsonl", lines)
    results = batch_results(settings, "batches.jsonl")
    assert [(r["transactionId"], r["httpStatus"]) for r in results] == [
        ("TX-" + str(a), 201),
        ("TX-" + str(b), 201),
    ]


# -- each code ------------------------------------------------------------------


def _pay(h, reference: str, number: int, amount: int) -> None:
    file = run_file(
        h, f"pay-{reference}.csv", payment_csv([payment_row(reference, number, amount)])
    )
    assert file.created == 1


CODE_CASES = {
    "INVOICES_MISSING": 400,
    "BAD_INVOICES_CURRENCY": 400,
    "BAD_INVOICES_PAYMENT_ACCOUNT": 400,
    "BAD_INVOICES_PAYMENT_EXPIRED": 400,
    "BAD_INVOICES_IN_BATCH": 400,
    "BAD_INVOICES_PAID": 400,
    "TRANSACTION_ID_MISSING": 400,
    "DUPLICATE_TRANSACTION_ID": 400,
    "INVOICE_NOT_FOUND": 404,
}


@pytest.mark.parametrize(("code", "status"), CODE_CASES.items(), ids=list(CODE_CASES))
def test_each_batch_code_is_reported_with_the_invoices_that_caused_it(
    pipeline, settings, code, status
):
    # Given invoices in the state the code is about
    soon = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    a, b, c = create_invoices(
        pipeline,
        [
            invoice_row(1, payment_account="ACC-1"),
            invoice_row(2, payment_account="ACC-1"),
            invoice_row(
                3,
                payment_account="ACC-2" if code == "BAD_INVOICES_PAYMENT_ACCOUNT" else "ACC-1",
                currency="EUR" if code == "BAD_INVOICES_CURRENCY" else "USD",
                request_expiry_date=soon
                if code == "BAD_INVOICES_PAYMENT_EXPIRED"
                else "2031-01-01T00:00:00Z",
            ),
        ],
    )
    numbers, tx, culprits = [a, c], "TX-NEW", [str(c)]
    if code == "INVOICES_MISSING":
        numbers, culprits = [], []
    elif code == "BAD_INVOICES_PAYMENT_EXPIRED":
        time.sleep(
            max(0.0, (datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds() + 0.2)
        )
    elif code == "BAD_INVOICES_IN_BATCH":
        run_file(pipeline, "earlier.json", json.dumps(batch_request("TX-EARLIER", [b, c])))
    elif code == "BAD_INVOICES_PAID":
        _pay(pipeline, "PAY-1", c, 10000)
    elif code == "TRANSACTION_ID_MISSING":
        tx, culprits = None, []
    elif code == "DUPLICATE_TRANSACTION_ID":
        run_file(pipeline, "earlier.json", json.dumps(batch_request("TX-NEW", [b])))
        culprits = []
    elif code == "INVOICE_NOT_FOUND":
        numbers, culprits = [a, 999_999], ["999999"]
    # When a batch request names them
    file = run_file(pipeline, "batch.json", json.dumps(batch_request(tx, numbers)))
    # Then it is rejected with that code alone, naming the invoices that caused it
    assert file.state == "processed" and file.created == 0
    [entry] = batch_results(settings, "batch.json")
    assert entry["status"] == "REJECTED" and entry["data"] is None
    assert entry["httpStatus"] == status
    [error] = entry["errors"]
    assert error["code"] == code
    assert error["invoiceNumbers"] == culprits
    assert error["message"]
    # And nothing was linked by it
    assert (
        pipeline.store.one(
            "SELECT count(*) AS n FROM invoices WHERE type = 'BATCH' AND transaction_id = 'TX-NEW'"
            " AND file_id = ?",
            (file.id,),
        )["n"]
        == 0
    )


def test_a_rejected_request_lists_every_error_in_table_order(pipeline, settings):
    a, b, c = create_invoices(
        pipeline, [invoice_row(1), invoice_row(2, currency="RWF"), invoice_row(3)]
    )
    _pay(pipeline, "PAY-1", c, 10000)
    request = {"invoiceNumbers": [str(c), str(b), "12345", str(a)]}
    run_file(pipeline, "batch.json", json.dumps(request))
    [entry] = batch_results(settings, "batch.json")
    assert [(e["code"], e["invoiceNumbers"]) for e in entry["errors"]] == [
        ("BAD_INVOICES_CURRENCY", [str(b)]),
        ("BAD_INVOICES_PAID", [str(c)]),
        ("TRANSACTION_ID_MISSING", []),
        ("INVOICE_NOT_FOUND", ["12345"]),
    ]
    # A request that is also malformed is a 400, even with an invoice not found
    assert entry["httpStatus"] == 400


def test_rule_4_covers_an_invoice_linked_by_an_earlier_request_of_the_same_file(
    pipeline, settings, store
):
    a, b, c = create_invoices(pipeline, [invoice_row(1), invoice_row(2), invoice_row(3)])
    requests = [batch_request("TX-1", [a, b]), batch_request("TX-2", [b, c])]
    run_file(pipeline, "batch.json", json.dumps(requests))
    first, second = batch_results(settings, "batch.json")
    assert first["httpStatus"] == 201
    assert [(e["code"], e["invoiceNumbers"]) for e in second["errors"]] == [
        ("BAD_INVOICES_IN_BATCH", [str(b)])
    ]
    assert store.one("SELECT batch_number FROM invoices WHERE invoice_number = ?", (c,))[0] is None


def test_rule_6_the_batch_expires_at_the_earliest_instant_across_offsets(pipeline, settings, store):
    # Given expiries whose text sorts the other way round from their instants
    a, b, c = create_invoices(
        pipeline,
        [
            invoice_row(1, request_expiry_date="2031-01-01T05:00:00+00:00"),
            invoice_row(2, request_expiry_date="2031-01-01T09:00:00+05:00"),  # 04:00 UTC
            invoice_row(3, request_expiry_date="2031-01-01T01:30:00-03:00"),  # 04:30 UTC
        ],
    )
    run_file(pipeline, "batch.json", json.dumps(batch_request("TX-6", [a, b, c])))
    [entry] = batch_results(settings, "batch.json")
    assert entry["data"]["expiryAt"] == "2031-01-01T04:00:00Z"
    stored = store.one("SELECT expires_at FROM invoices WHERE transaction_id = 'TX-6'")[0]
    assert stored.startswith("2031-01-01T04:00:00")


@pytest.mark.parametrize("racers", [2, 4])
def test_batch_files_racing_for_one_invoice_link_it_once(make_pipeline, settings, store, racers):
    # Given as many worker threads as batch files, each claiming one shared invoice at once
    h = make_pipeline(settings.with_(worker_threads=racers))
    [shared, *own] = create_invoices(h, [invoice_row(i) for i in range(racers + 1)])
    for n, mine in enumerate(own):
        h.drop(f"race-{n}.json", json.dumps(batch_request(f"TX-{n}", [mine, shared])))
    h.wait_final(racers + 1)
    # Then exactly one batch links it; every other request names it as already in a batch
    entries = [batch_results(settings, f"race-{n}.json")[0] for n in range(racers)]
    assert sorted(e["status"] for e in entries) == ["CREATED"] + ["REJECTED"] * (racers - 1)
    for e in entries:
        if e["status"] == "REJECTED":
            assert [(x["code"], x["invoiceNumbers"]) for x in e["errors"]] == [
                ("BAD_INVOICES_IN_BATCH", [str(shared)])
            ]
    [winner] = [e for e in entries if e["status"] == "CREATED"]
    row = store.one("SELECT batch_number FROM invoices WHERE invoice_number = ?", (shared,))
    assert row["batch_number"] == int(winner["data"]["invoiceNumber"])
    assert store.one("SELECT count(*) AS n FROM invoices WHERE type = 'BATCH'")["n"] == 1


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("[]", "EMPTY_FILE"),
        ('{"orderId": 1}', "UNKNOWN_FILE_KIND"),
        ('[{"transactionId": "TX-1", "invoiceNumbers": []}, 3]', "UNREADABLE_FILE"),
        ("[" * 5000 + "]" * 5000, "UNREADABLE_FILE"),
        ('{"transactionId": "TX-1",\n', "UNREADABLE_FILE"),
        ("transaction_id,description\nTX-1,x\n", "MISSING_COLUMN"),
    ],
    ids=["empty-array", "not-a-request", "not-an-object", "nested", "truncated", "no-invoices"],
)
def test_a_batch_file_that_cannot_be_used_is_rejected_whole(pipeline, settings, content, code):
    file = run_file(pipeline, "bad.json", content)
    assert file.state == "rejected"
    error = json.loads((settings.outbox / "bad.json.error.json").read_text())
    assert error["code"] == code
    assert (settings.rejected / "bad.json").read_text() == content


def test_a_request_may_name_an_invoice_twice_or_with_leading_zeros_and_counts_it_once(
    pipeline, settings
):
    a, b = create_invoices(pipeline, [invoice_row(1), invoice_row(2)])
    body = {"transactionId": "TX-1", "invoiceNumbers": [a, str(a), f"00{a}", f" {b} ", ""]}
    run_file(pipeline, "batch.json", json.dumps(body))
    [entry] = batch_results(settings, "batch.json")
    assert entry["data"]["amount"] == 20000
    assert entry["data"]["childInvoices"] == [str(a), str(b)]
