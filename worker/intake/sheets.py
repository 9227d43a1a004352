"""A workbook's package checked before calamine opens it: what it is, how big it unpacks,
and what its first sheet holds that cannot be read as rows (formulas, error values).

calamine builds a sheet as one dense grid (first to last used row, by first to last used
column) and inflates every part it reads, so a small file can ask for gigabytes: two
cells at ``A1`` and ``XFD1048576``, or a zip that inflates a thousandfold. Everything here
is bounded before calamine sees the file, and reads the XML in blocks (memory stays flat).
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import polars as pl

from worker.errors import FileRejected

#: Excel's own limits; a sheet's grid (rows by columns) is bounded by MAX_CELLS.
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
#: About 350 MB in calamine's grid (a cell is ~32 bytes before its text, and 5M cells of an
#: invoice sheet are ~350,000 rows). Bigger exports are better sent as CSV, read streaming.
MAX_CELLS = 5_000_000
#: Bytes every part of the package may inflate to, together.
MAX_UNPACKED = 512 << 20
MAX_PARTS = 10_000
#: An OpenDocument sheet's content.xml is scanned whole (its repeats need the row structure).
MAX_ODS_CONTENT = 128 << 20
BLOCK = 4 << 20
#: Bytes kept from one block to the next so that a tag cut by the block edge is seen whole.
CARRY = 4096

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
SAVE_AS = "save it again from the spreadsheet program as .xlsx or .ods, or as CSV"

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


def _reject(why: str, line: int | None = None) -> FileRejected:
    return FileRejected("UNREADABLE_FILE", why, line=line)


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
        raise _reject(_ole_kind(path))
    if not head.startswith(b"PK\x03\x04"):
        raise _reject(f"not a workbook (neither a zip package nor readable): {SAVE_AS}")
    try:
        with zipfile.ZipFile(path) as package:
            return _inspect(package)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise _reject(f"a damaged workbook ({exc}): {SAVE_AS}") from None
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise _reject(f"a workbook packed in a way that is not supported ({exc})") from None


def _ole_kind(path: Path) -> str:
    """An OLE file named as a workbook: Excel's password protection keeps the real package
    in an ``EncryptedPackage`` stream; anything else is an old binary ``.xls``."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as fh:
        carry = b""
        while block := fh.read(BLOCK):
            if marker in carry + block:
                return "an encrypted workbook (protected by a password): save it without one"
            carry = block[-len(marker) :]
    return f"an old Excel (.xls) workbook, not .xlsx: {SAVE_AS}"


def _inspect(package: zipfile.ZipFile) -> FirstSheet:
    parts = package.infolist()
    if len(parts) > MAX_PARTS or sum(p.file_size for p in parts) > MAX_UNPACKED:
        raise _reject(f"the workbook unpacks to more than {MAX_UNPACKED >> 20} MiB")
    names = {p.filename for p in parts}
    for part in parts:
        if part.flag_bits & 0x1:
            raise _reject("an encrypted workbook (protected by a password): save it without one")
    if "xl/workbook.xml" in names:
        _check_parts(package, parts)
        return _first_xlsx_sheet(package, names)
    if "mimetype" in names and package.read("mimetype").strip() == ODS_MIME:
        manifest = (
            _read_small(package, "META-INF/manifest.xml")
            if "META-INF/manifest.xml" in names
            else b""
        )
        if b"encryption-data" in manifest:
            raise _reject("an encrypted spreadsheet (protected by a password): save it without one")
        _check_parts(package, parts)
        return _first_ods_sheet(package, names)
    raise _reject(f"a zip archive that is not a workbook (no spreadsheet inside): {SAVE_AS}")


def _check_parts(package: zipfile.ZipFile, parts: list[zipfile.ZipInfo]) -> None:
    """Inflate every XML part once, in blocks: zipfile stops at each part's declared size
    and checks its CRC, so a part that inflates past what it declares is refused here."""
    total = 0
    for part in parts:
        if not part.filename.endswith((".xml", ".rels")):
            continue
        with package.open(part) as fh:
            while block := fh.read(BLOCK):
                total += len(block)
                if total > MAX_UNPACKED:
                    raise _reject(f"the workbook unpacks to more than {MAX_UNPACKED >> 20} MiB")


def _read_small(package: zipfile.ZipFile, name: str, limit: int = 16 << 20) -> bytes:
    with package.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _reject(f"the workbook's {name} is larger than {limit >> 20} MiB")
    return data


def _xml(data: bytes, name: str) -> ElementTree.Element:
    # No DTDs: entity tricks (billion laughs, external entities) are refused outright.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _reject(f"the workbook's {name} declares a DTD, which no workbook needs")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise _reject(f"a damaged workbook ({name}: {exc}): {SAVE_AS}") from None


def _first_xlsx_sheet(package: zipfile.ZipFile, names: set[str]) -> FirstSheet:
    book = _xml(_read_small(package, "xl/workbook.xml"), "workbook.xml")
    sheets = [e for e in book.iter() if e.tag.rsplit("}", 1)[-1] == "sheet"]
    if not sheets:
        if "xl/vbaProject.bin" in names:
            raise _reject("the workbook holds only macros, no sheet of rows")
        raise _reject("the workbook has no sheet")
    first = sheets[0]
    rel_id = next((v for k, v in first.attrib.items() if k.rsplit("}", 1)[-1] == "id"), None)
    rels = _xml(_read_small(package, "xl/_rels/workbook.xml.rels"), "workbook.xml.rels")
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
        raise _reject(
            f"the first sheet is {what.get(kind, 'not a sheet of rows')}: "
            "put the rows on the first sheet"
        )
    if part not in names:
        raise _reject(f"a damaged workbook (its first sheet is missing): {SAVE_AS}")
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
            block = fh.read(BLOCK)
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
                    raise _header_not_in_row_1(first_value_row)
            # The end of the previous window too: a formula's cell tag may sit there.
            _refuse_formula_or_error(tags, previous + window)
            _check_grid(last_row, last_column, cells)
            if not block:
                return
            previous = window[-CARRY:]


def _header_not_in_row_1(first: int) -> FileRejected:
    return FileRejected(
        "UNKNOWN_FILE_KIND",
        f"row 1 of the first sheet is empty (its first values are in row {first}): "
        "the header must be row 1",
        line=1,
    )


def _refuse_formula_or_error(tags: _Tags, window: bytes) -> None:
    if tags.has_formula(window):
        found = tags.formula.search(window)
        before = (
            tags.cell.findall(window[max(0, found.start() - CARRY) : found.start()])
            if found
            else []
        )
        cell = _ref_in(before[-1]) if before else "(unknown)"
        raise _reject(
            f"cell {cell} of the first sheet holds a formula: formulas are not read (their "
            "saved result may be stale or missing); replace them by their values "
            "(copy, then paste values) and save again",
            line=_row_of(cell),
        )
    error = tags.error.search(window) if b't="e"' in window else None
    if error:
        cell = _ref_in(error.group(0))
        raise _reject(
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
        _check_grid(rows, columns, 0)


def _check_grid(rows: int, columns: int, cells: int) -> None:
    if rows > MAX_ROWS or columns > MAX_COLUMNS or max(rows * columns, cells) > MAX_CELLS:
        raise _reject(
            f"the first sheet is too large to read ({rows:,} rows by {columns:,} columns; "
            f"at most {MAX_CELLS:,} cells are read from a workbook): send it as CSV"
        )


# -- OpenDocument -------------------------------------------------------------------

_ODS_TOKEN = (
    r"<table:table-row\b[^>]*>|</table:table-row>|</table:table>"
    r"|<table:(?:covered-)?table-cell\b[^>]*>"
)


def _first_ods_sheet(package: zipfile.ZipFile, names: set[str]) -> FirstSheet:
    if "content.xml" not in names:
        raise _reject(f"a damaged spreadsheet (no content.xml): {SAVE_AS}")
    content = _read_small(package, "content.xml", MAX_ODS_CONTENT)
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise _reject("the spreadsheet's content.xml declares a DTD, which no spreadsheet needs")
    start = content.find(b"<table:table ")
    if start < 0:
        raise _reject("the spreadsheet has no sheet")
    name = re.search(rb'table:name="([^"]*)"', content[start : start + 4096])
    _scan_ods_sheet(content[start:].decode("utf-8", errors="replace"))
    return FirstSheet("ods", _unescape(name.group(1).decode()) if name else "")


def _unescape(text: str) -> str:
    return (
        text.replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )


def _repeat(what: str) -> pl.Expr:
    return pl.col("tag").str.extract(what + r'-repeated="([0-9]{1,9})"').cast(pl.Int64).fill_null(1)


def _scan_ods_sheet(sheet: str) -> None:
    """The grid calamine will build, from the rows' and cells' repeat counts, as one polars
    pass over the sheet's tags: rows repeated and cells repeated multiply."""
    tags = (
        pl.Series("tag", [sheet], pl.String)
        .str.extract_all(_ODS_TOKEN)
        .explode()
        .to_frame()
        .with_row_index("i")
    )
    end = tags.filter(pl.col("tag") == "</table:table>")["i"].first()
    if end is not None:
        tags = tags.filter(pl.col("i") < end)
    tag = pl.col("tag")
    is_row = tag.str.starts_with("<table:table-row")
    is_cell = tag.str.starts_with("<table:table-cell") | tag.str.starts_with(
        "<table:covered-table-cell"
    )
    frame = tags.with_columns(
        row_id=is_row.cum_sum(),
        rows=pl.when(is_row).then(_repeat("table:number-rows")),
        span=pl.when(is_cell).then(_repeat("table:number-columns")).otherwise(0),
        value=is_cell
        & (tag.str.contains("office:value-type=") | tag.str.contains("table:formula=")),
        formula=is_cell & tag.str.contains("table:formula="),
    ).with_columns(
        column_end=pl.col("span").cum_sum().over("row_id"),
        rows=pl.col("rows").forward_fill().fill_null(1),
    )
    per_row = (
        frame.group_by("row_id", maintain_order=True)
        .agg(
            rows=pl.col("rows").first(),
            has_value=pl.col("value").any(),
            last_column=pl.col("column_end").filter(pl.col("value")).max(),
            formula_column=(pl.col("column_end") - pl.col("span") + 1)
            .filter(pl.col("formula"))
            .first(),
        )
        .with_columns(
            row_end=pl.col("rows").cum_sum(),
            row_start=pl.col("rows").cum_sum() - pl.col("rows") + 1,
        )
    )
    valued = per_row.filter(pl.col("has_value"))
    if valued.is_empty():
        return
    first = valued.row(0, named=True)
    if first["row_start"] > 1:
        raise _header_not_in_row_1(first["row_start"])
    formulas = valued.filter(pl.col("formula_column").is_not_null())
    if not formulas.is_empty():
        hit = formulas.row(0, named=True)
        cell = f"{_letters(hit['formula_column'])}{hit['row_start']}"
        raise _reject(
            f"cell {cell} of the first sheet holds a formula: formulas are not read (their "
            "saved result may be stale or missing); replace them by their values "
            "(copy, then paste values) and save again",
            line=hit["row_start"],
        )
    rows = int(valued["row_end"].max())  # type: ignore[arg-type]
    columns = int(valued["last_column"].max())  # type: ignore[arg-type]
    _check_grid(rows, columns, 0)


def _letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters
