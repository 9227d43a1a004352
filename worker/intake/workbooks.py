"""Workbooks (``.xlsx``, ``.xlsm``, ``.ods``): the first sheet written out as a UTF-8 CSV in
the file's work folder, which the CSV path then reads. Every rule, code and result is the
CSV one, and a row's ``line_number`` is its sheet row: the sheet's rows become the CSV's
records one for one, empty ones included (the header is row 1, as in the sheet).

Cells become text as SPEC 12 says: a whole number is its integer (``10000``, never
``10000.0``, nor an exponent), other numbers without binary noise, a date-time (which has
no offset) taken in ``spreadsheet_timezone`` with that zone's offset at that instant, and
a text cell as written, even one that looks like a date.

Telling a cell's type apart: fastexcel (calamine) gives one type per column, coercing the
rest, so a column is read under several types and the results are compared, per column
and vectorised. As text (``string``) every cell comes out, a date-time as
``2031-01-01 10:00:00`` (or ``2031-01-01T10:00:00`` from an .ods). As ``datetime`` (or
``date``) a text cell is null, however much it looks like a date, while date and number
cells have a value; a date cell is therefore one with a value there whose text has the
date shape, which a number's text never has. As ``boolean`` a text cell is null and a
number is not, which tells a number from text that looks like one (``1.50`` typed as text
stays ``1.50``). The extra reads are made only for the columns whose text could need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl

from worker.errors import FileRejected
from worker.intake import bounds, sheets

if TYPE_CHECKING:
    import fastexcel

SUFFIXES = (".xlsx", ".xlsm", ".ods")

#: A date-time cell's text as fastexcel writes it: calamine's own format, or ISO from .ods.
_DATETIME_TEXT = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?$"
_DATE_TEXT = r"^\d{4}-\d{2}-\d{2}$"
#: A number cell's text with a fraction (whole numbers are already exact integers).
_FRACTION_TEXT = r"^-?\d+\.\d+$"
_BOOLEAN_TEXT = ("true", "false")

Dtype = Literal["string", "boolean", "datetime", "date", "float"]


def is_workbook(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def to_csv(source: Path, target: Path, timezone: str) -> Path:
    """The first sheet of ``source`` as a CSV at ``target``, or FileRejected saying why."""
    # Imported here: only a workbook needs it, and every worker process imports this module.
    import fastexcel

    first = sheets.inspect(source)
    try:
        reader = fastexcel.read_excel(source)
        text = _read(reader, first.name, "string")
        if text.height and text.width:
            text = text.with_columns(_typed(reader, first.name, text, timezone))
    except (fastexcel.FastExcelError, pl.exceptions.PolarsError, OSError) as exc:
        raise FileRejected(
            "UNREADABLE_FILE",
            f"not readable as a workbook ({_first_line(exc)}): {bounds.SAVE_AS}",
        ) from None
    if not text.height:
        raise FileRejected("EMPTY_FILE", "the first sheet is empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    # No header line of polars' own: the sheet's row 1 is the header, written as a record.
    text.write_csv(target, include_header=False, null_value="", line_terminator="\n")
    return target


def _read(
    reader: fastexcel.ExcelReader, sheet: str, dtype: Dtype, columns: list[int] | None = None
) -> pl.DataFrame:
    loaded = reader.load_sheet(
        sheet,
        header_row=None,
        dtypes=dtype,
        use_columns=columns,
        n_rows=bounds.MAX_ROWS,
    )
    return loaded.to_polars()


def _matching(text: pl.DataFrame, pattern: str) -> list[int]:
    """The columns where some cell's text matches ``pattern``."""
    found = text.select(pl.all().str.contains(pattern).any())
    return [i for i, hit in enumerate(found.row(0)) if hit]


def _typed(
    reader: fastexcel.ExcelReader, sheet: str, text: pl.DataFrame, timezone: str
) -> list[pl.Expr]:
    """The columns whose cells need their type to be written right, rewritten."""
    names = text.columns
    dated = set(_matching(text, _DATETIME_TEXT))
    days = set(_matching(text, _DATE_TEXT))
    numeric = set(_matching(text, _FRACTION_TEXT)) | {
        i for i, hit in enumerate(text.select(pl.all().is_in(_BOOLEAN_TEXT).any()).row(0)) if hit
    }
    instants = _other(reader, sheet, "datetime", sorted(dated), names)
    dates = _other(reader, sheet, "date", sorted(days), names)
    flags = _other(reader, sheet, "boolean", sorted(numeric), names)
    floats = _other(reader, sheet, "float", sorted(numeric), names)
    out = []
    for i in sorted(dated | days | numeric):
        name = names[i]
        value = pl.col(name)
        if i in numeric:
            value = _number(value, flags[name], floats[name])
        if i in days:
            midnight = dates[name].cast(pl.Datetime("ms"))
            value = _instant(value, _DATE_TEXT, midnight, timezone)
        if i in dated:
            value = _instant(value, _DATETIME_TEXT, instants[name], timezone)
        out.append(value.alias(name))
    return out


def _other(
    reader: fastexcel.ExcelReader, sheet: str, dtype: Dtype, columns: list[int], names: list[str]
) -> dict[str, pl.Series]:
    """``columns`` read again as ``dtype``, by the text frame's column names."""
    if not columns:
        return {}
    frame = _read(reader, sheet, dtype, columns)
    return {names[i]: frame.to_series(k) for k, i in enumerate(columns)}


def _instant(value: pl.Expr, shape: str, instant: pl.Series, timezone: str) -> pl.Expr:
    """A date-time cell in ``timezone``, with its offset; a wall time the zone skips (the
    hour clocks go forward) keeps its offset-less text, which the rules then refuse."""
    local = pl.lit(instant).dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    )
    whole = local.dt.strftime("%Y-%m-%dT%H:%M:%S%:z")
    fraction = local.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
    written = pl.when(local.dt.millisecond() == 0).then(whole).otherwise(fraction)
    is_date = pl.lit(instant).is_not_null() & value.str.contains(shape)
    return pl.when(is_date & local.is_not_null()).then(written).otherwise(value)


def _number(value: pl.Expr, flag: pl.Series, number: pl.Series) -> pl.Expr:
    """A number cell with a fraction at 15 significant digits, as Excel shows it (``0.1 +
    0.2`` is ``0.3``); a true/false cell as the sheet shows it. Text cells are left alone."""
    is_cell = pl.lit(flag).is_not_null()
    shown = pl.lit(number).round_sig_figs(15).cast(pl.String)
    # polars writes very small or large numbers with an exponent: fastexcel's text has none.
    plain = pl.when(shown.str.contains("e")).then(value).otherwise(shown)
    return (
        pl.when(is_cell & value.is_in(_BOOLEAN_TEXT))
        .then(value.str.to_uppercase())
        .when(is_cell & value.str.contains(_FRACTION_TEXT))
        .then(plain)
        .otherwise(value)
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
