"""Every invoice row code of SPEC 4, with its column, read from a real file."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import future, invoice_csv, invoice_row

from rules.invoices import INVOICE_COLUMNS
from worker import kinds as checking
from worker.kinds import KINDS
from worker.settings import Settings, load


def errors_of(settings: Settings, tmp_path: Path, rows: list[dict]) -> list[str]:
    path = tmp_path / "invoices.csv"
    path.write_text(invoice_csv(rows), encoding="utf-8")
    report = checking.check(settings, path, tmp_path / "work")
    by_line = dict(report.errors)
    return [by_line.get(line, "") for line in range(2, len(rows) + 2)]


CASES = [
    ({"service_command": ""}, "REQUIRED(service_command)"),
    ({"service_command": "AUTHORIZATION"}, "SERVICE_COMMAND_NOT_ALLOWED(service_command)"),
    ({"merchant_reference": "  "}, "REQUIRED(merchant_reference)"),
    ({"merchant_reference": "R" * 41}, "TOO_LONG(merchant_reference)"),
    ({"merchant_reference": "-starts-with-dash"}, "INVALID_FORMAT(merchant_reference)"),
    ({"merchant_reference": "has space"}, "INVALID_FORMAT(merchant_reference)"),
    ({"amount": "10.00"}, "INVALID_AMOUNT(amount)"),
    ({"amount": "0"}, "INVALID_AMOUNT(amount)"),
    ({"amount": "-5"}, "INVALID_AMOUNT(amount)"),
    ({"amount": "12345678901"}, "INVALID_AMOUNT(amount)"),
    ({"amount": "1e3"}, "INVALID_AMOUNT(amount)"),
    ({"amount": "１２"}, "INVALID_AMOUNT(amount)"),
    ({"currency": "XYZ"}, "INVALID_CURRENCY(currency)"),
    ({"currency": ""}, "REQUIRED(currency)"),
    ({"language": "de"}, "INVALID_VALUE(language)"),
    ({"customer_email": "not-an-email"}, "INVALID_EMAIL(customer_email)"),
    ({"customer_email": "a@" + "b" * 250 + ".com"}, "TOO_LONG(customer_email)"),
    ({"request_expiry_date": "2027-01-01"}, "INVALID_DATE(request_expiry_date)"),
    ({"request_expiry_date": "2027-01-01T10:00:00"}, "INVALID_DATE(request_expiry_date)"),
    ({"request_expiry_date": "2020-01-01T10:00:00+00:00"}, "EXPIRY_IN_PAST(request_expiry_date)"),
    ({"notification_type": "PIGEON"}, "INVALID_VALUE(notification_type)"),
    ({"notification_type": "SMS"}, "PHONE_REQUIRED_FOR_SMS(customer_phone)"),
    ({"customer_name": "N" * 41}, "TOO_LONG(customer_name)"),
    ({"customer_phone": "+25 078"}, "INVALID_FORMAT(customer_phone)"),
    ({"customer_phone": "+" + "1" * 19}, "TOO_LONG(customer_phone)"),
    ({"order_description": "d" * 151}, "TOO_LONG(order_description)"),
    ({"link_command": "CAPTURE"}, "INVALID_VALUE(link_command)"),
    ({"return_url": "ftp://example.com/x"}, "INVALID_FORMAT(return_url)"),
    ({"return_url": "https://x.example/" + "a" * 400}, "TOO_LONG(return_url)"),
]


@pytest.mark.parametrize(
    ("fields", "expected"), CASES, ids=[c[1] + ":" + repr(c[0])[:30] for c in CASES]
)
def test_each_row_code_names_its_column(settings, tmp_path, fields, expected):
    # Given a file whose second row breaks one rule
    rows = [invoice_row(1), invoice_row(2, **fields)]
    # When it is validated
    errors = errors_of(settings, tmp_path, rows)
    # Then the good row has no error and the bad one exactly that code
    assert errors == ["", expected]


VALID_VARIANTS = [
    {"language": "AR"},
    {"currency": "rwf", "amount": "2000"},
    {"currency": "JOD", "amount": "100000"},
    {"notification_type": "email, sms", "customer_phone": "+250788000000"},
    {"notification_type": "NONE,SMS"},
    {"request_expiry_date": future().replace("+00:00", "Z")},
    {"request_expiry_date": future().replace("T", " ")},
    {"request_expiry_date": future()[:16] + "+02:00"},
    {"request_expiry_date": future().replace("+00:00", ".123456-05:30")},
    {"customer_email": "zoë@exämple.com"},
    {"return_url": "HTTPS://shop.example.com/a?b=c"},
    {"amount": "0100"},
    {"link_command": "AUTHORIZATION"},
]


@pytest.mark.parametrize("fields", VALID_VARIANTS, ids=[repr(v)[:40] for v in VALID_VARIANTS])
def test_accepted_variants_are_valid(settings, tmp_path, fields):
    assert errors_of(settings, tmp_path, [invoice_row(1, **fields)]) == [""]


def test_a_reference_repeated_in_the_file_is_rejected_after_its_first_use(settings, tmp_path):
    rows = [invoice_row(1), invoice_row(2, merchant_reference="REF-000001"), invoice_row(3)]
    assert errors_of(settings, tmp_path, rows) == [
        "",
        "DUPLICATE_MERCHANT_REFERENCE(merchant_reference)",
        "",
    ]


def test_references_repeated_across_chunks_are_found(tmp_path):
    settings = load(env={}, home=tmp_path / "h", chunk_rows=2)
    rows = [invoice_row(i) for i in range(1, 6)] + [invoice_row(1)]
    assert errors_of(settings, tmp_path, rows)[-1] == (
        "DUPLICATE_MERCHANT_REFERENCE(merchant_reference)"
    )


def test_a_row_lists_one_code_per_column_in_column_order(settings, tmp_path):
    rows = [invoice_row(1, amount="x", currency="", customer_email="bad", language="xx")]
    assert errors_of(settings, tmp_path, rows) == [
        "INVALID_AMOUNT(amount);REQUIRED(currency);INVALID_VALUE(language);"
        "INVALID_EMAIL(customer_email)"
    ]


def test_required_comes_before_too_long_before_format(settings, tmp_path):
    rows = [invoice_row(1, merchant_reference="-" * 41)]
    assert errors_of(settings, tmp_path, rows) == ["TOO_LONG(merchant_reference)"]


class TestAccounts:
    def configured(self, tmp_path: Path, **extra) -> Settings:
        return load(env={}, home=tmp_path / "h", accounts={"ACC-1": "RWF", "ACC-2": "USD"}, **extra)

    def test_an_unknown_account_is_rejected(self, tmp_path):
        s = self.configured(tmp_path)
        errors = errors_of(s, tmp_path, [invoice_row(1, payment_account="ACC-9")])
        assert errors == ["UNKNOWN_PAYMENT_ACCOUNT(payment_account)"]

    def test_a_currency_not_the_accounts_is_a_mismatch_on_currency(self, tmp_path):
        s = self.configured(tmp_path)
        errors = errors_of(s, tmp_path, [invoice_row(1, payment_account="ACC-1", currency="USD")])
        assert errors == ["CURRENCY_ACCOUNT_MISMATCH(currency)"]

    def test_a_blank_account_is_required_without_a_default(self, tmp_path):
        s = self.configured(tmp_path)
        assert errors_of(s, tmp_path, [invoice_row(1)]) == ["REQUIRED(payment_account)"]

    def test_a_blank_account_means_the_default(self, tmp_path):
        s = self.configured(tmp_path, default_account="ACC-2")
        assert errors_of(s, tmp_path, [invoice_row(1, currency="USD")]) == [""]
        assert errors_of(s, tmp_path, [invoice_row(1, currency="RWF")]) == [
            "CURRENCY_ACCOUNT_MISMATCH(currency)"
        ]


def test_a_currency_outside_the_configured_list_is_invalid(tmp_path):
    s = load(env={}, home=tmp_path / "h", currencies=("RWF",))
    assert errors_of(s, tmp_path, [invoice_row(1, currency="USD")]) == [
        "INVALID_CURRENCY(currency)"
    ]


def test_every_rule_code_is_exercised_by_a_case():
    exercised = {expected.split("(")[0] + "(" + expected.split("(")[1] for _, expected in CASES}
    declared = {f"{r.code}({c.name})" for c in INVOICE_COLUMNS for r in c.rules}
    declared |= {f"{c.required_when[0]}({c.name})" for c in INVOICE_COLUMNS if c.required_when}
    # Stateful and configuration codes have tests of their own above and in test_pipeline.
    elsewhere = {
        "DUPLICATE_MERCHANT_REFERENCE(merchant_reference)",
        "MERCHANT_REFERENCE_EXISTS(merchant_reference)",
        "CURRENCY_ACCOUNT_MISMATCH(currency)",
        "UNKNOWN_PAYMENT_ACCOUNT(payment_account)",
        "REQUIRED(payment_account)",
    }
    assert declared - elsewhere <= exercised


def test_every_way_of_running_the_query_validates_a_file_alike(tmp_path: Path, monkeypatch) -> None:
    import polars as pl

    from bench.generate import write_invoices
    from worker.intake.readers import open_table
    from worker.kinds.context import rules_context
    from worker.kinds.invoices import validation
    from worker.pipeline import chunks

    # Given a generated file with bad rows of every kind, over several chunks
    path = tmp_path / "invoices.csv"
    write_invoices(path, 5000, seed=4)
    ctx = rules_context((), {}, None)

    def validated(streaming_from: int, unoptimised_below: int) -> pl.DataFrame:
        monkeypatch.setattr(validation, "STREAMING_FROM_ROWS", streaming_from)
        monkeypatch.setattr(validation, "UNOPTIMISED_BELOW_ROWS", unoptimised_below)
        folder = tmp_path / f"work-{streaming_from}-{unoptimised_below}"
        validation.validate_to(open_table(path, folder, KINDS.signatures), ctx, folder, 1500, None)
        frames = [chunk for _, chunk in chunks.read_all(folder)]
        return pl.concat(frames).with_columns(token=pl.col("token").is_not_null())

    # When it is validated on the in-memory engine with and without plan optimisation,
    # and on the streaming engine
    in_memory = validated(10**9, 0)
    unoptimised = validated(10**9, 10**9)
    streaming = validated(0, 0)
    # Then the chunks are the same, tokens aside (they are random), ordinals included
    assert in_memory.equals(streaming)
    assert in_memory.equals(unoptimised)
    assert in_memory["ordinal"].drop_nulls().to_list() == list(range(in_memory["valid"].sum()))
