"""Bad and hostile input files, each with the outcome the worker must reach.

An entry is (id, file name, bytes, expected), where expected is either
``("processed", rows, rejected)`` or ``("rejected", code, line)``.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zipfile

from helpers import INVOICE_HEADER, invoice_csv, invoice_row

GOOD = invoice_csv([invoice_row(1), invoice_row(2)])


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


def _rows_with(**fields: str) -> bytes:
    return invoice_csv([invoice_row(1, **fields)]).encode()


def _header_partly_quoted() -> bytes:
    header = ",".join(f'"{h}"' if i % 2 else h for i, h in enumerate(INVOICE_HEADER))
    return (header + "\n" + GOOD.split("\n", 1)[1]).encode()


def _many_columns() -> bytes:
    header = list(INVOICE_HEADER) + [f"extra_{i}" for i in range(4986)]
    rows = [invoice_row(1, **{f"extra_{i}": "x" for i in range(4986)})]
    return invoice_csv(rows, tuple(header)).encode()


def _duplicate_header() -> bytes:
    text = GOOD.replace("customer_name", "amount", 1)
    return text.encode()


def _mixed_eol() -> bytes:
    lines = invoice_csv([invoice_row(i) for i in range(1, 5)]).split("\n")
    return ("\r\n".join(lines[:3]) + "\n" + "\n".join(lines[3:])).encode()


CORPUS: list[tuple[str, str, bytes, tuple[object, ...]]] = [
    ("utf8", "a.csv", GOOD.encode(), ("processed", 2, 0)),
    ("utf8-bom", "a.csv", codecs.BOM_UTF8 + GOOD.encode(), ("processed", 2, 0)),
    (
        "utf16-le-bom",
        "a.csv",
        GOOD.encode("utf-16-le").join([codecs.BOM_UTF16_LE, b""]),
        ("processed", 2, 0),
    ),
    ("utf16-be-bom", "a.csv", codecs.BOM_UTF16_BE + GOOD.encode("utf-16-be"), ("processed", 2, 0)),
    # An odd number of bytes: the last character is cut in half (found by hypothesis).
    (
        "utf16-cut-short",
        "a.csv",
        codecs.BOM_UTF16_LE + GOOD.encode("utf-16-le") + b"\xe9",
        ("rejected", "UNREADABLE_FILE", GOOD.count("\n") + 1),
    ),
    (
        "utf16-bom-and-one-byte",
        "a.csv",
        codecs.BOM_UTF16_LE + b"\xe9",
        ("rejected", "UNREADABLE_FILE", 1),
    ),
    (
        "cp1252",
        "a.csv",
        invoice_csv([invoice_row(1), invoice_row(2, customer_name="Zoë “Z”")]).encode("cp1252"),
        ("rejected", "UNREADABLE_FILE", 3),
    ),
    (
        "latin1",
        "a.csv",
        invoice_csv([invoice_row(1, customer_name="Ñandú")]).encode("latin-1"),
        ("rejected", "UNREADABLE_FILE", 2),
    ),
    ("mixed-eol", "a.csv", _mixed_eol(), ("processed", 4, 0)),
    ("cr-only-mac-excel", "a.csv", GOOD.replace("\n", "\r").encode(), ("processed", 2, 0)),
    ("no-final-newline", "a.csv", GOOD.rstrip("\n").encode(), ("processed", 2, 0)),
    (
        "unterminated-quote",
        "a.csv",
        (GOOD + 'PAYMENT_LINK,R9,1,USD,en,"a@b.co\n').encode(),
        ("rejected", "UNREADABLE_FILE", 4),
    ),
    (
        "ragged-row",
        "a.csv",
        (GOOD + "PAYMENT_LINK" + ",x" * 20 + "\n").encode(),
        ("rejected", "UNREADABLE_FILE", 4),
    ),
    ("10mb-field", "a.csv", _rows_with(order_description="d" * 10_000_000), ("processed", 1, 1)),
    ("5000-columns", "a.csv", _many_columns(), ("processed", 1, 0)),
    ("duplicate-header", "a.csv", _duplicate_header(), ("rejected", "UNREADABLE_FILE", 1)),
    ("partly-quoted-header", "a.csv", _header_partly_quoted(), ("processed", 2, 0)),
    (
        "nul-bytes",
        "a.csv",
        GOOD.encode() + b"PAYMENT_LINK,R\x00,1\n",
        ("rejected", "UNREADABLE_FILE", 4),
    ),
    ("gzip", "a.csv", gzip.compress(GOOD.encode()), ("rejected", "UNREADABLE_FILE", 1)),
    ("zip-xlsx", "a.csv", _zip(), ("rejected", "UNREADABLE_FILE", 1)),
    ("empty", "a.csv", b"", ("rejected", "EMPTY_FILE", None)),
    ("whitespace", "a.csv", b" \n\t\r\n  \n", ("rejected", "EMPTY_FILE", None)),
    ("thousands-separator", "a.csv", _rows_with(amount="1,234.50"), ("processed", 1, 1)),
    ("exponent", "a.csv", _rows_with(amount="1e3"), ("processed", 1, 1)),
    ("negative-zero", "a.csv", _rows_with(amount="-0"), ("processed", 1, 1)),
    ("full-width-digits", "a.csv", _rows_with(amount="０１２"), ("processed", 1, 1)),
    (
        "unicode-email",
        "a.csv",
        _rows_with(customer_email="josé@correo.example"),
        ("processed", 1, 0),
    ),
    (
        "date-z",
        "a.csv",
        _rows_with(request_expiry_date="2031-01-01T00:00:00Z"),
        ("processed", 1, 0),
    ),
    (
        "date-no-seconds",
        "a.csv",
        _rows_with(request_expiry_date="2031-01-01T10:00+03:00"),
        ("processed", 1, 0),
    ),
    (
        "date-fraction",
        "a.csv",
        _rows_with(request_expiry_date="2031-01-01T10:00:00.123456+03:00"),
        ("processed", 1, 0),
    ),
    (
        "date-dst-gap",
        "a.csv",
        _rows_with(request_expiry_date="2031-03-30T02:30:00+01:00"),
        ("processed", 1, 0),
    ),
    (
        "date-no-offset",
        "a.csv",
        _rows_with(request_expiry_date="2031-01-01T10:00:00"),
        ("processed", 1, 1),
    ),
    ("name-with-spaces", "march invoices (final).csv", GOOD.encode(), ("processed", 2, 0)),
    ("name-unicode", "factures-été-ñ-请求.csv", GOOD.encode(), ("processed", 2, 0)),
    ("name-newline", "evil\nX-Header: 1.csv", GOOD.encode(), ("processed", 2, 0)),
    ("name-255-bytes", "n" * 251 + ".csv", GOOD.encode(), ("processed", 2, 0)),
    ("name-leading-dashes", "--rf.csv", GOOD.encode(), ("processed", 2, 0)),
    ("formula-name", "=cmd|' -C calc'!A0.csv", GOOD.encode(), ("processed", 2, 0)),
]
