"""A workbook's package checked before calamine opens it: what it is (a zip workbook, an
encrypted or old binary one, a zip of something else), how big it unpacks, which is its
first sheet, and what that sheet holds that cannot be read as rows (formulas, error
values). An .xlsx sheet is read in blocks, so memory stays flat; the bounds are in
:mod:`worker.intake.bounds`.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from worker.intake import bounds, opendocument

#: Bytes kept from one block to the next so that a tag cut by the block edge is seen whole.
CARRY = 4096
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"

_REF = re.compile(rb'\br="([A-Z]{1,3})([0-9]{1,7})"')
#: A cell reference's column; a leading space, not ``\\b``: a pattern that starts with a
#: literal is found at memchr speed (5x faster on a 65 MB sheet).
_COLUMN = re.compile(rb' r="([A-Z]{1,3})[0-9]')
_PREFIX = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet\b")


class _Tags:
    """The sheet's tag patterns, for the prefix its writer gave the main namespace (most
    write none; some .NET writers write ``x:``): patterns that start with a literal are
    found at memchr speed."""

    def __init__(self, prefix: bytes) -> None:
        p = re.escape(prefix + b":" if prefix else b"")
        self.prefix = prefix + b":" if prefix else b""
        self.cell = re.compile(rb"<" + p + rb"c\b([^>]{0,2000})>")
        self.row = re.compile(rb"<" + p + rb'row\b[^>]{0,2000}? r="([0-9]{1,7})"')
        self.formula = re.compile(rb"<" + p + rb"f\b")
        self.error = re.compile(rb"<" + p + rb'c\b[^>]{0,2000}?\bt="e"')
        self.value_cell = re.compile(
            rb"<" + p + rb'c\b[^>]{0,2000}?\br="[A-Z]{1,3}([0-9]{1,7})"[^>]{0,2000}>'
            rb"\s*<" + p + rb"(?:v|is)\b"
        )
        self.dimension = re.compile(rb"<" + p + rb'dimension\b[^>]*\bref="([A-Z0-9:]+)"')

    def count_cells(self, window: bytes) -> int:
        c = b"<" + self.prefix + b"c"
        return window.count(c + b" ") + window.count(c + b">") + window.count(c + b"/")

    def has_formula(self, window: bytes) -> bool:
        f = b"<" + self.prefix + b"f"
        return (f + b">" in window or f + b" " in window or f + b"/" in window) and bool(
            self.formula.search(window)
        )


@dataclass(frozen=True)
class FirstSheet:
    """What calamine is to read: the package's format and its first sheet's name."""

    format: str  # "xlsx" or "ods"
    name: str


def column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


def inspect(path: Path) -> FirstSheet:
    """The first sheet of a workbook that is safe to give calamine, or FileRejected."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(OLE_MAGIC):
        raise bounds.reject(_ole_kind(path))
    if not head.startswith(b"PK\x03\x04"):
        raise bounds.reject(
            f"not a workbook (neither a zip package nor readable): {bounds.SAVE_AS}"
        )
    try:
        with zipfile.ZipFile(path) as package:
            return _inspect(package)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise bounds.reject(f"a damaged workbook ({exc}): {bounds.SAVE_AS}") from None
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise bounds.reject(f"a workbook packed in a way that is not supported ({exc})") from None


def _ole_kind(path: Path) -> str:
    """An OLE file named as a workbook: Excel's password protection keeps the real package
    in an ``EncryptedPackage`` stream; anything else is an old binary ``.xls``."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as fh:
        carry = b""
        while block := fh.read(bounds.BLOCK):
            if marker in carry + block:
                return "an encrypted workbook (protected by a password): save it without one"
            carry = block[-len(marker) :]
    return f"an old Excel (.xls) workbook, not .xlsx: {bounds.SAVE_AS}"


def _inspect(package: zipfile.ZipFile) -> FirstSheet:
    parts = package.infolist()
    if len(parts) > bounds.MAX_PARTS or sum(p.file_size for p in parts) > bounds.MAX_UNPACKED:
        raise bounds.reject(f"the workbook unpacks to more than {bounds.MAX_UNPACKED >> 20} MiB")
    names = {p.filename for p in parts}
    for part in parts:
        if part.flag_bits & 0x1:
            raise bounds.reject(
                "an encrypted workbook (protected by a password): save it without one"
            )
    if "xl/workbook.xml" in names:
        _check_parts(package, parts)
        return _first_xlsx_sheet(package, names)
    if "mimetype" in names and package.read("mimetype").strip() == ODS_MIME:
        manifest = (
            bounds.read_small(package, "META-INF/manifest.xml")
            if "META-INF/manifest.xml" in names
            else b""
        )
        if b"encryption-data" in manifest:
            raise bounds.reject(
                "an encrypted spreadsheet (protected by a password): save it without one"
            )
        _check_parts(package, parts)
        return FirstSheet("ods", opendocument.first_sheet(package, names))
    raise bounds.reject(
        f"a zip archive that is not a workbook (no spreadsheet inside): {bounds.SAVE_AS}"
    )


def _check_parts(package: zipfile.ZipFile, parts: list[zipfile.ZipInfo]) -> None:
    """Inflate every XML part once, in blocks: zipfile stops at each part's declared size
    and checks its CRC, so a part that inflates past what it declares is refused here."""
    total = 0
    for part in parts:
        if not part.filename.endswith((".xml", ".rels")):
            continue
        with package.open(part) as fh:
            while block := fh.read(bounds.BLOCK):
                total += len(block)
                if total > bounds.MAX_UNPACKED:
                    raise bounds.reject(
                        f"the workbook unpacks to more than {bounds.MAX_UNPACKED >> 20} MiB"
                    )


def _xml(data: bytes, name: str) -> ElementTree.Element:
    # No DTDs: entity tricks (billion laughs, external entities) are refused outright.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise bounds.reject(f"the workbook's {name} declares a DTD, which no workbook needs")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise bounds.reject(f"a damaged workbook ({name}: {exc}): {bounds.SAVE_AS}") from None


def _first_xlsx_sheet(package: zipfile.ZipFile, names: set[str]) -> FirstSheet:
    book = _xml(bounds.read_small(package, "xl/workbook.xml"), "workbook.xml")
    sheets = [e for e in book.iter() if e.tag.rsplit("}", 1)[-1] == "sheet"]
    if not sheets:
        if "xl/vbaProject.bin" in names:
            raise bounds.reject("the workbook holds only macros, no sheet of rows")
        raise bounds.reject("the workbook has no sheet")
    first = sheets[0]
    rel_id = next((v for k, v in first.attrib.items() if k.rsplit("}", 1)[-1] == "id"), None)
    rels = _xml(bounds.read_small(package, "xl/_rels/workbook.xml.rels"), "workbook.xml.rels")
    target = next(
        (e.get("Target", "") for e in rels.iter() if e.get("Id") == rel_id and rel_id), ""
    )
    part = target.lstrip("/") if target.startswith("/") else posixpath.normpath("xl/" + target)
    kind = posixpath.basename(posixpath.dirname(part))
    if kind != "worksheets":
        what = {
            "macrosheets": "a macro sheet",
            "chartsheets": "a chart",
            "dialogsheets": "a dialog",
        }
        raise bounds.reject(
            f"the first sheet is {what.get(kind, 'not a sheet of rows')}: "
            "put the rows on the first sheet"
        )
    if part not in names:
        raise bounds.reject(f"a damaged workbook (its first sheet is missing): {bounds.SAVE_AS}")
    _scan_xlsx_sheet(package, part)
    return FirstSheet("xlsx", first.get("name", ""))


def _scan_xlsx_sheet(package: zipfile.ZipFile, part: str) -> None:
    """Bound the sheet's grid and refuse formulas and error values, naming the cell."""
    last_row = last_column = cells = 0
    first_value_row: int | None = None
    carry = previous = b""
    tags: _Tags | None = None
    with package.open(part) as fh:
        while True:
            block = fh.read(bounds.BLOCK)
            data = carry + block
            # Cut before the last tag: every tag in the window is whole, the rest waits.
            cut = max(data.rfind(b"<"), 0) if block else len(data)
            window, carry = data[:cut], data[cut:]
            if tags is None:
                prefix = _PREFIX.search(window)
                if prefix is None and block:
                    carry = data
                    continue
                tags = _Tags(prefix.group(1) or b"" if prefix else b"")
                if dimension := tags.dimension.search(window):
                    _check_dimension(dimension.group(1).decode())
            cells += tags.count_cells(window)
            if letters := set(_COLUMN.findall(window)):
                last_column = max(last_column, *(column_number(c.decode()) for c in letters))
            if rows := tags.row.findall(window):
                last_row = max(last_row, int(rows[-1]))
            if first_value_row is None and (value := tags.value_cell.search(window)):
                first_value_row = int(value.group(1))
                if first_value_row > 1:
                    raise bounds.header_not_in_row_1(first_value_row)
            # The end of the previous window too: a formula's cell tag may sit there.
            _refuse_formula_or_error(tags, previous + window)
            bounds.check_grid(last_row, last_column, cells)
            if not block:
                return
            previous = window[-CARRY:]


def _refuse_formula_or_error(tags: _Tags, window: bytes) -> None:
    if tags.has_formula(window):
        found = tags.formula.search(window)
        before = (
            tags.cell.findall(window[max(0, found.start() - CARRY) : found.start()])
            if found
            else []
        )
        cell = _ref_in(before[-1]) if before else "(unknown)"
        raise bounds.reject(
            f"cell {cell} of the first sheet {bounds.FORMULA}",
            line=_row_of(cell),
        )
    error = tags.error.search(window) if b't="e"' in window else None
    if error:
        cell = _ref_in(error.group(0))
        raise bounds.reject(
            f"cell {cell} of the first sheet holds an error value (such as #N/A): "
            "put the value the row needs there",
            line=_row_of(cell),
        )


def _ref_in(tag: bytes) -> str:
    ref = _REF.search(tag)
    return (ref.group(1) + ref.group(2)).decode() if ref else "(unknown)"


def _row_of(cell: str) -> int | None:
    digits = cell.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return int(digits) if digits.isdigit() else None


def _check_dimension(ref: str) -> None:
    corners = [_REF.search(f'r="{c}"'.encode()) for c in ref.split(":")]
    if len(corners) == 2 and all(corners):
        (c1, r1), (c2, r2) = ((m.group(1).decode(), int(m.group(2))) for m in corners if m)
        rows, columns = r2 - r1 + 1, column_number(c2) - column_number(c1) + 1
        bounds.check_grid(rows, columns, 0)
