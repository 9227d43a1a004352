"""``rules.batches`` as data: each rule has a case that triggers it and one that passes it;
``invoice-worker validate`` and ``template`` for batch request and payment files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from helpers import (
    PAYMENT_HEADER,
    batch_request,
    cli,
    create_invoices,
    invoice_row,
    payment_csv,
    payment_row,
)

from rules.batches import BATCH_RULES, INVOICE_SCHEMA, BatchContext, Request, evaluate, http_status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def invoice(number: int, **fields: object) -> dict[str, object]:
    """One row of the invoices frame the rules read: a found, open, unlinked USD invoice."""
    row: dict[str, object] = {
        "requested": str(number),
        "invoice_number": number,
        "found": True,
        "type": "SINGLE",
        "status": "NEW",
        "currency": "USD",
        "payment_account": "ACC-1",
        "expires_at": LATER,
        "batch_number": None,
        "amount": 10000,
        "language": "en",
    }
    row.update(fields)
    return row


def missing(text: str) -> dict[str, object]:
    row = {name: None for name in INVOICE_SCHEMA}
    return {**row, "requested": text, "found": False}


Case = tuple[Request, list[dict[str, object]], BatchContext, list[str]]


def case(
    rows: list[dict[str, object]],
    tx: str | None = "TX-1",
    ctx: BatchContext | None = None,
    culprits: list[str] | None = None,
) -> Case:
    request = Request(tx, tuple(str(r["requested"]) for r in rows))
    return request, rows, ctx or BatchContext(now=NOW), culprits or []


GOOD = [invoice(1), invoice(2)]

#: For each code: (a case that triggers it, naming these invoices), (a case that passes it).
CASES: dict[str, tuple[Case, Case]] = {
    "INVOICES_MISSING": (case([]), case(GOOD)),
    "BAD_INVOICES_CURRENCY": (
        case([invoice(1), invoice(2, currency="RWF")], culprits=["2"]),
        case(GOOD),
    ),
    "BAD_INVOICES_PAYMENT_ACCOUNT": (
        case([invoice(1), invoice(2, payment_account=None)], culprits=["2"]),
        case([invoice(1, payment_account=None), invoice(2, payment_account=None)]),
    ),
    "BAD_INVOICES_PAYMENT_EXPIRED": (
        case([invoice(1), invoice(2, expires_at=NOW)], culprits=["2"]),
        case([invoice(1), invoice(2, expires_at=NOW + timedelta(seconds=1))]),
    ),
    "BAD_INVOICES_IN_BATCH": (
        case([invoice(1, batch_number=7), invoice(2)], culprits=["1"]),
        case(GOOD),
    ),
    "BAD_INVOICES_PAID": (
        case([invoice(1), invoice(2, status="PAID")], culprits=["2"]),
        case(GOOD),
    ),
    "BAD_INVOICES_CANCELLED": (
        case([invoice(1, status="CANCELLED"), invoice(2)], culprits=["1"]),
        case(GOOD),
    ),
    "TRANSACTION_ID_MISSING": (case(GOOD, tx=None), case(GOOD)),
    "DUPLICATE_TRANSACTION_ID": (
        case(GOOD, ctx=BatchContext(now=NOW, transaction_exists=True)),
        case(GOOD, ctx=BatchContext(now=NOW, transaction_exists=False)),
    ),
    "INVOICE_NOT_FOUND": (case([invoice(1), missing("42x")], culprits=["42x"]), case(GOOD)),
}


def test_every_batch_rule_has_its_cases():
    assert list(CASES) == [rule.code for rule in BATCH_RULES]


@pytest.mark.parametrize("rule", BATCH_RULES, ids=[r.code for r in BATCH_RULES])
def test_each_batch_rule_has_a_case_that_triggers_it_and_one_that_passes_it(rule):
    (request, rows, ctx, culprits), passing = CASES[rule.code]
    frame = pl.DataFrame(rows, schema=INVOICE_SCHEMA, orient="row")
    failures = {f.rule.code: f for f in evaluate(request, frame, ctx)}
    assert rule.code in failures
    assert list(failures[rule.code].invoice_numbers) == culprits
    request, rows, ctx, _ = passing
    frame = pl.DataFrame(rows, schema=INVOICE_SCHEMA, orient="row")
    assert evaluate(request, frame, ctx) == []


def test_rules_are_listed_in_the_order_codes_are_reported_with_their_http_status():
    assert [(r.code, r.http_status) for r in BATCH_RULES] == [
        ("INVOICES_MISSING", 400),
        ("BAD_INVOICES_CURRENCY", 400),
        ("BAD_INVOICES_PAYMENT_ACCOUNT", 400),
        ("BAD_INVOICES_PAYMENT_EXPIRED", 400),
        ("BAD_INVOICES_IN_BATCH", 400),
        ("BAD_INVOICES_PAID", 400),
        ("BAD_INVOICES_CANCELLED", 400),
        ("TRANSACTION_ID_MISSING", 400),
        ("DUPLICATE_TRANSACTION_ID", 400),
        ("INVOICE_NOT_FOUND", 404),
    ]
    assert all(r.name and r.message for r in BATCH_RULES)
    assert all((r.invoices is None) != (r.request is None) for r in BATCH_RULES)
    assert http_status([]) == 201


def test_an_invoice_claimed_earlier_in_the_file_counts_as_in_a_batch():
    request, rows, _, _ = case(GOOD)
    ctx = BatchContext(now=NOW, claimed=frozenset({2}))
    frame = pl.DataFrame(rows, schema=INVOICE_SCHEMA, orient="row")
    [failure] = evaluate(request, frame, ctx)
    assert (failure.rule.code, failure.invoice_numbers) == ("BAD_INVOICES_IN_BATCH", ("2",))


# -- the command line -------------------------------------------------------------


def test_validate_checks_batch_requests_against_the_current_state(pipeline, settings, tmp_path):
    # Given two invoices in the state database
    a, b = create_invoices(pipeline, [invoice_row(1), invoice_row(2, currency="EUR")])
    path = tmp_path / "batches.json"
    requests = [
        batch_request("TX-1", [a]),
        batch_request("TX-2", [a, b, "777"]),
        batch_request("TX-1", [b]),
    ]
    path.write_text(json.dumps(requests))
    # When the file is validated (the worker still running: nothing is written)
    done = cli("validate", str(path), home=settings.home)
    # Then the second request is rejected as processing would, naming the invoices
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    where = "batches.json: request 2: transaction TX-2:"
    assert f"{where} BAD_INVOICES_CURRENCY (invoices differ in currency): {b}" in lines
    assert f"{where} BAD_INVOICES_IN_BATCH (an invoice is already in a batch): {a}" in lines
    assert any("INVOICE_NOT_FOUND" in line and line.endswith(": 777") for line in lines)
    assert any("request 3" in line and "DUPLICATE_TRANSACTION_ID" in line for line in lines)
    assert lines[-1] == "batches.json: batches file, 3 batch requests, 1 valid, 2 with errors"
    assert pipeline.store.one("SELECT count(*) AS n FROM invoices WHERE type = 'BATCH'")["n"] == 0


def test_validate_checks_payment_rows_with_their_columns(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    path = tmp_path / "payments.csv"
    path.write_text(payment_csv([payment_row("PAY-1", 100000000001, "1.5")]))
    done = cli("validate", str(path), home=home)
    assert done.returncode == 1
    assert done.stdout.splitlines()[:2] == [
        "payments.csv:2: invoice_number: INVOICE_NOT_FOUND (no invoice has this number)",
        "payments.csv:2: amount: INVALID_AMOUNT"
        " (a positive whole number of minor units, at most 10 digits)",
    ]


@pytest.mark.parametrize(
    ("kind", "header"),
    [
        ("batches", "transaction_id,invoice_number,description"),
        ("payments", ",".join(PAYMENT_HEADER)),
    ],
)
def test_templates_print_the_spec_header_and_a_row_of_the_right_kind(tmp_path: Path, kind, header):
    home = tmp_path / "home"
    home.mkdir()
    printed = cli("template", kind, home=home)
    assert printed.returncode == 0
    assert printed.stdout.splitlines()[0] == header
    path = tmp_path / f"{kind}.csv"
    path.write_text(printed.stdout)
    # The example names an invoice that does not exist yet: valid format, one row with errors
    checked = cli("validate", str(path), home=home)
    assert checked.returncode == 1, checked.stderr
    assert f"{kind} file" in checked.stdout.splitlines()[-1]
    assert "INVOICE_NOT_FOUND" in checked.stdout
    assert "INVALID" not in checked.stdout
