"""How much of a workbook is read, and the rejections every format shares.

calamine builds a sheet as one dense grid (first to last used row, by first to last used
column) and inflates every part it reads, so a small file can ask for gigabytes: two
cells at ``A1`` and ``XFD1048576``, a zip that inflates a thousandfold, or an .ods row
repeated a million times. These bounds are checked before calamine sees the file.
"""

from __future__ import annotations

import zipfile

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

SAVE_AS = "save it again from the spreadsheet program as .xlsx or .ods, or as CSV"
FORMULA = (
    "holds a formula: formulas are not read (their saved result may be stale or missing); "
    "replace them by their values (copy, then paste values) and save again"
)


def reject(why: str, line: int | None = None) -> FileRejected:
    return FileRejected("UNREADABLE_FILE", why, line=line)


def read_small(package: zipfile.ZipFile, name: str, limit: int = 16 << 20) -> bytes:
    with package.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise reject(f"the workbook's {name} is larger than {limit >> 20} MiB")
    return data


def header_not_in_row_1(first: int) -> FileRejected:
    return FileRejected(
        "UNKNOWN_FILE_KIND",
        f"row 1 of the first sheet is empty (its first values are in row {first}): "
        "the header must be row 1",
        line=1,
    )


def check_grid(rows: int, columns: int, cells: int) -> None:
    if rows > MAX_ROWS or columns > MAX_COLUMNS or max(rows * columns, cells) > MAX_CELLS:
        raise reject(
            f"the first sheet is too large to read ({rows:,} rows by {columns:,} columns; "
            f"at most {MAX_CELLS:,} cells are read from a workbook): send it as CSV"
        )
