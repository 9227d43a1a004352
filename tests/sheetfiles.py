"""Workbooks for the tests: real .xlsx files written by openpyxl, .ods files zipped from
their XML (no ODF writer is a dependency; the format is a zip of a few XML parts), and the
hostile ones, each built the way such a file really is."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any
from xml.sax.saxutils import escape

from openpyxl import Workbook

#: A value written as a text cell whatever it looks like (openpyxl would make "=..." a
#: formula, and leaves strings strings).
Text = type("Text", (str,), {})


def xlsx(rows: list[list[Any]], *, title: str = "Sheet1") -> bytes:
    """A workbook whose first sheet holds ``rows`` (None leaves a cell empty, ``[]`` a row)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is None:
                continue
            cell = sheet.cell(r, c, value)
            if isinstance(value, Text):
                cell.data_type = "s"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rows_of(header: tuple[str, ...], rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [list(header)] + [
        [row.get(h) if row.get(h) != "" else None for h in header] for row in rows
    ]


def replace_part(workbook: bytes, name: str, content: bytes | None, **extra: bytes) -> bytes:
    """The workbook with one part replaced (None: removed) and ``extra`` parts added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info, src.read(info))
            elif content is not None:
                dst.writestr(info, content)
        for extra_name, data in extra.items():
            dst.writestr(extra_name.replace("__", "/"), data)
    return out.getvalue()


def part(workbook: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(workbook)) as z:
        return z.read(name)


# -- OpenDocument ----------------------------------------------------------------------

_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" \
manifest:version="1.2">
 <manifest:file-entry manifest:full-path="/" \
manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" office:version="1.2">'
    '<office:body><office:spreadsheet><table:table table:name="Sheet1">'
)
_TAIL = "</table:table></office:spreadsheet></office:body></office:document-content>"
#: What LibreOffice writes after the last row: the rest of the sheet, empty, as one row.
ODS_TRAILER = (
    '<table:table-row table:number-rows-repeated="1048570">'
    '<table:table-cell table:number-columns-repeated="1024"/></table:table-row>'
)


class Raw(str):
    """A cell's XML, written as given."""


def _ods_cell(value: Any) -> str:
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, int | float):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    return (
        f'<table:table-cell office:value-type="string"><text:p>{escape(str(value))}</text:p>'
        "</table:table-cell>"
    )


def ods_date(iso: str) -> Raw:
    return Raw(
        f'<table:table-cell office:value-type="date" office:date-value="{iso}">'
        f"<text:p>{iso}</text:p></table:table-cell>"
    )


def ods(rows: list[list[Any]], extra_rows: str = ODS_TRAILER, manifest: str = _MANIFEST) -> bytes:
    body = "".join(
        "<table:table-row>" + "".join(_ods_cell(v) for v in row) + "</table:table-row>"
        for row in rows
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        # The mimetype first and stored, as ODF requires.
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", _HEAD + body + extra_rows + _TAIL, zipfile.ZIP_DEFLATED)
    return out.getvalue()


# -- hostile ---------------------------------------------------------------------------


def ole(*stream_names: str) -> bytes:
    """An OLE compound file's header and one directory sector naming ``stream_names``: the
    container Excel writes a password-protected workbook in (``EncryptionInfo`` and
    ``EncryptedPackage``), and an old .xls in (``Workbook``)."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<HH", 0x3E, 3)
    header += b"\xfe\xff" + struct.pack("<H", 9) + bytes(512 - len(header) - 2)
    entries = b""
    for name in ("Root Entry", *stream_names):
        encoded = name.encode("utf-16-le") + b"\x00\x00"
        entries += encoded.ljust(64, b"\x00") + struct.pack("<H", len(encoded)) + bytes(62)
    return header + entries.ljust(512, b"\x00")


def zip_bomb_sheet(good: bytes) -> bytes:
    """A workbook whose sheet inflates far past what a package may (600 MiB of whitespace
    packed into well under 1 MiB), its sizes declared truthfully."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                dst.writestr(info, src.read(info))
                continue
            sheet = src.read(info)
            target = zipfile.ZipInfo(info.filename)
            target.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(target, "w", force_zip64=True) as fh:
                fh.write(sheet[:-20])
                chunk = b" " * (1 << 20)
                for _ in range(600):
                    fh.write(chunk)
                fh.write(sheet[-20:])
    return out.getvalue()
