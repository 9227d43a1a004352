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
from sheetfiles import ODS_TRAILER, Raw, ods, ole, part, replace_part, rows_of, xlsx, zip_bomb_sheet

GOOD = invoice_csv([invoice_row(1), invoice_row(2)])


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


def _rows_with(**fields: str) -> bytes:
    return invoice_csv([invoice_row(1, **fields)]).encode()


def _data_rows(*rows: dict[str, str]) -> str:
    return invoice_csv(list(rows)).split("\n", 1)[1]


def _large_then(bad_row: bytes) -> bytes:
    """A file past ``readers.CHECK_BESIDE_BYTES`` (its text checked beside the reading),
    good up to its last row, ``bad_row`` (line 3)."""
    big = invoice_csv([invoice_row(1, order_description="d" * 6_000_000)]).encode()
    return big + bad_row


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


def _hostile_cancellations() -> bytes:
    """A cancellation file naming no invoice that exists, in every hostile way."""
    rows = [
        {"invoice_number": "=1+1", "reason": "formula"},
        {"merchant_reference": '@SUM(A1)\n"quoted", and more', "reason": "r" * 100_000},
        {"invoice_number": "9" * 40, "merchant_reference": "\u202eevil"},
    ]
    return invoice_csv(rows, ("invoice_number", "merchant_reference", "reason")).encode()


# -- workbooks (SPEC 12) ---------------------------------------------------------------

GOOD_SHEET = rows_of(INVOICE_HEADER, [invoice_row(1), invoice_row(2)])
GOOD_XLSX = xlsx(GOOD_SHEET)


def _xlsx_with_formula() -> bytes:
    rows = [list(r) for r in GOOD_SHEET]
    rows[2][2] = "=100*100"  # C3: openpyxl writes a string starting with = as a formula
    return xlsx(rows)


def _xlsx_with_error_cell() -> bytes:
    rows = [list(r) for r in GOOD_SHEET]
    rows[1][8] = "#N/A"  # I2: openpyxl writes Excel's error codes as error cells
    return xlsx(rows)


def _xlsx_sparse_far_corner() -> bytes:
    """Two cells: the header's first, and one at XFD1048576 (a 17-billion-cell grid)."""
    sheet = part(GOOD_XLSX, "xl/worksheets/sheet1.xml")
    far = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    sheet = sheet.replace(b"</sheetData>", far + b"</sheetData>").replace(
        b'<dimension ref="A1:N3"/>', b'<dimension ref="A1:XFD1048576"/>'
    )
    return replace_part(GOOD_XLSX, "xl/worksheets/sheet1.xml", sheet)


def _xlsx_macro_sheet_only() -> bytes:
    """The first (and only) sheet is an Excel 4 macro sheet, the workbook a VBA project."""
    rels = part(GOOD_XLSX, "xl/_rels/workbook.xml.rels").replace(
        b"worksheets/sheet1.xml", b"macrosheets/sheet1.xml"
    )
    with_rels = replace_part(GOOD_XLSX, "xl/_rels/workbook.xml.rels", rels)
    sheet = part(GOOD_XLSX, "xl/worksheets/sheet1.xml")
    moved = replace_part(
        with_rels, "xl/worksheets/sheet1.xml", None, xl__macrosheets__sheet1_xml=sheet
    )
    return replace_part(moved, "xl/vbaProject.bin", None, xl__vbaProject_bin=ole("VBA"))


def _xlsx_with_dtd() -> bytes:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    book = part(GOOD_XLSX, "xl/workbook.xml")
    return replace_part(GOOD_XLSX, "xl/workbook.xml", laughs + book.split(b"?>", 1)[-1])


def _zip_of(**parts: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return out.getvalue()


_ODS_BOMB = (
    '<table:table-row table:number-rows-repeated="1000000">'
    '<table:table-cell table:number-columns-repeated="16000" office:value-type="float" '
    'office:value="1"><text:p>1</text:p></table:table-cell></table:table-row>'
)
_ODS_FORMULA = Raw(
    '<table:table-cell table:formula="of:=100*100" office:value-type="float" '
    'office:value="10000"><text:p>10000</text:p></table:table-cell>'
)


def _ods_with_formula() -> bytes:
    rows = [list(r) for r in GOOD_SHEET]
    rows[2][2] = _ODS_FORMULA  # C3
    return ods(rows)


def _ods_encrypted() -> bytes:
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
        "</manifest:file-entry></manifest:manifest>"
    )
    return ods(GOOD_SHEET, manifest=manifest)


WORKBOOKS: list[tuple[str, str, bytes, tuple[object, ...]]] = [
    ("xlsx", "a.xlsx", GOOD_XLSX, ("processed", 2, 0)),
    ("xlsm", "a.xlsm", GOOD_XLSX, ("processed", 2, 0)),
    ("ods", "a.ods", ods(GOOD_SHEET), ("processed", 2, 0)),
    ("xlsx-formula", "a.xlsx", _xlsx_with_formula(), ("rejected", "UNREADABLE_FILE", 3)),
    ("xlsx-error-cell", "a.xlsx", _xlsx_with_error_cell(), ("rejected", "UNREADABLE_FILE", 2)),
    ("ods-formula", "a.ods", _ods_with_formula(), ("rejected", "UNREADABLE_FILE", 3)),
    (
        "xlsx-encrypted",
        "a.xlsx",
        ole("EncryptionInfo", "EncryptedPackage"),
        ("rejected", "UNREADABLE_FILE", None),
    ),
    ("xls-renamed", "a.xlsx", ole("Workbook"), ("rejected", "UNREADABLE_FILE", None)),
    ("ods-encrypted", "a.ods", _ods_encrypted(), ("rejected", "UNREADABLE_FILE", None)),
    (
        "zip-not-workbook",
        "a.xlsx",
        _zip_of(**{"readme.txt": b"hello"}),
        ("rejected", "UNREADABLE_FILE", None),
    ),
    (
        "xlsx-corrupt",
        "a.xlsx",
        GOOD_XLSX[: len(GOOD_XLSX) // 2],
        ("rejected", "UNREADABLE_FILE", None),
    ),
    ("xlsx-not-a-zip", "a.xlsx", GOOD.encode(), ("rejected", "UNREADABLE_FILE", None)),
    ("xlsx-macro-only", "a.xlsm", _xlsx_macro_sheet_only(), ("rejected", "UNREADABLE_FILE", None)),
    ("xlsx-far-corner", "a.xlsx", _xlsx_sparse_far_corner(), ("rejected", "UNREADABLE_FILE", None)),
    ("xlsx-zip-bomb", "a.xlsx", zip_bomb_sheet(GOOD_XLSX), ("rejected", "UNREADABLE_FILE", None)),
    (
        "ods-repeat-bomb",
        "a.ods",
        ods([list(INVOICE_HEADER)], _ODS_BOMB),
        ("rejected", "UNREADABLE_FILE", None),
    ),
    ("xlsx-dtd", "a.xlsx", _xlsx_with_dtd(), ("rejected", "UNREADABLE_FILE", None)),
    ("xlsx-empty-sheet", "a.xlsx", xlsx([]), ("rejected", "EMPTY_FILE", None)),
    ("xlsx-header-only", "a.xlsx", xlsx(GOOD_SHEET[:1]), ("rejected", "EMPTY_FILE", 2)),
    ("ods-header-only", "a.ods", ods(GOOD_SHEET[:1], ODS_TRAILER), ("rejected", "EMPTY_FILE", 2)),
    (
        "xlsx-header-in-row-3",
        "a.xlsx",
        xlsx([[], [], *GOOD_SHEET]),
        ("rejected", "UNKNOWN_FILE_KIND", 1),
    ),
]


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
    # Large files: the text check runs beside the reading, and still rejects the file
    # (nothing made of its good rows), naming the line.
    (
        "large-then-latin1",
        "a.csv",
        _large_then(_data_rows(invoice_row(2, customer_name="Ñandú")).encode("latin-1")),
        ("rejected", "UNREADABLE_FILE", 3),
    ),
    (
        "large-then-nul",
        "a.csv",
        _large_then(b"PAYMENT_LINK,R\x00,1\n"),
        ("rejected", "UNREADABLE_FILE", 3),
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
    ("cancellations-hostile", "c.csv", _hostile_cancellations(), ("processed", 3, 3)),
    *WORKBOOKS,
]
