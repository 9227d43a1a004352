"""Excel-style input: BOMs, semicolons, CRLF, header case and order, quoted fields."""

from __future__ import annotations

import codecs

import pytest
from helpers import INVOICE_HEADER, invoice_csv, invoice_row

from worker import kinds as checking
from worker.errors import FileRejected
from worker.intake import readers
from worker.kinds import KINDS


def check(settings, tmp_path, data: bytes):
    path = tmp_path / "excel.csv"
    path.write_bytes(data)
    return checking.check(settings, path, tmp_path / "work")


@pytest.mark.parametrize(
    ("encode", "delimiter", "newline"),
    [
        (lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), ";", "\r\n"),
        (lambda t: t.encode("utf-8"), ",", "\r\n"),
        (lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), ",", "\n"),
        (lambda t: t.encode("utf-16"), ";", "\r\n"),
        (lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), ",", "\n"),
    ],
    ids=["utf8-bom-semicolon-crlf", "utf8-crlf", "utf8-bom-lf", "utf16le-bom", "utf16be-bom"],
)
def test_excel_exports_read_the_same(settings, tmp_path, encode, delimiter, newline):
    rows = [invoice_row(1), invoice_row(2, amount="1.5"), invoice_row(3)]
    text = invoice_csv(rows, delimiter=delimiter, newline=newline)
    report = check(settings, tmp_path, encode(text))
    assert (report.rows, report.rejected) == (3, 1)
    assert report.errors == [(3, "INVALID_AMOUNT(amount)")]


def test_headers_match_in_any_case_order_and_spacing(settings, tmp_path):
    header = tuple(reversed(INVOICE_HEADER))
    text = invoice_csv([invoice_row(1)], header)
    shouty = text.replace("merchant_reference", " Merchant_Reference ").replace(
        "currency", "CURRENCY"
    )
    report = check(settings, tmp_path, shouty.encode())
    assert (report.rows, report.rejected) == (1, 0)


def test_quoted_fields_keep_delimiters_quotes_and_newlines_with_record_line_numbers(
    settings, tmp_path
):
    # Given a description spanning three physical lines, with ; , and "" inside
    rows = [
        invoice_row(1, order_description='Line one; with, "quotes"\r\nline two\r\nline three'),
        invoice_row(2, amount="bad"),
    ]
    text = invoice_csv(rows, delimiter=";", newline="\r\n")
    assert text.count("\r\n") == 5  # header, two rows, two embedded line breaks
    report = check(settings, tmp_path, text.encode())
    # Then the bad row is record 3, not physical line 5
    assert report.errors == [(3, "INVALID_AMOUNT(amount)")]


def test_a_blank_line_is_skipped_but_keeps_the_numbering(settings, tmp_path):
    text = (
        invoice_csv([invoice_row(1)])
        + "\n"
        + invoice_csv([invoice_row(2, amount="x")]).split("\n", 1)[1]
    )
    report = check(settings, tmp_path, text.encode())
    assert report.rows == 2
    assert report.errors == [(4, "INVALID_AMOUNT(amount)")]


def test_a_missing_final_newline_loses_nothing(settings, tmp_path):
    text = invoice_csv([invoice_row(1), invoice_row(2, currency="NOPE")]).rstrip("\n")
    report = check(settings, tmp_path, text.encode())
    assert report.errors == [(3, "INVALID_CURRENCY(currency)")]


def test_latin1_bytes_are_unreadable_naming_the_line(settings, tmp_path):
    text = invoice_csv([invoice_row(1), invoice_row(2, customer_name="Zoë")])
    with pytest.raises(FileRejected) as why:
        check(settings, tmp_path, text.encode("latin-1"))
    assert why.value.code == "UNREADABLE_FILE"
    assert why.value.line == 3


def test_a_configured_encoding_reads_latin1(settings, tmp_path):
    text = invoice_csv([invoice_row(1, customer_name="Zoë")])
    report = check(settings.with_(encoding="cp1252"), tmp_path, text.encode("cp1252"))
    assert (report.rows, report.rejected) == (1, 0)


def test_the_kind_is_told_from_the_header_not_the_name(tmp_path):
    path = tmp_path / "payments.csv"
    path.write_text(invoice_csv([invoice_row(1)]))
    assert readers.open_table(path, tmp_path / "w", KINDS.signatures).kind == "invoices"
    path.write_text("payment_reference,invoice_number,amount,currency\nP1,1,100,USD\n")
    assert readers.open_table(path, tmp_path / "w", KINDS.signatures).kind == "payments"
    path.write_text('{"transactionId": "T1", "invoiceNumbers": ["1"]}')
    assert readers.open_table(path, tmp_path / "w", KINDS.signatures).format == "json"
