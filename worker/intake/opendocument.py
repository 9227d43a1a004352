"""An OpenDocument spreadsheet's first sheet, bounded before calamine reads it.

Rows and cells carry repeat counts (LibreOffice writes the sheet's empty rest as one row
repeated a million times), so the grid calamine will build is worked out from the tags:
one polars pass over them, rows repeated and cells repeated multiplying.
"""

from __future__ import annotations

import re
import zipfile

import polars as pl

from worker.intake import bounds

_ODS_TOKEN = (
    r"<table:table-row\b[^>]*>|</table:table-row>|</table:table>"
    r"|<table:(?:covered-)?table-cell\b[^>]*>"
)


def first_sheet(package: zipfile.ZipFile, names: set[str]) -> str:
    """The name of the first sheet, once its grid is bounded and it holds no formula."""
    if "content.xml" not in names:
        raise bounds.reject(f"a damaged spreadsheet (no content.xml): {bounds.SAVE_AS}")
    content = bounds.read_small(package, "content.xml", bounds.MAX_ODS_CONTENT)
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise bounds.reject(
            "the spreadsheet's content.xml declares a DTD, which no spreadsheet needs"
        )
    start = content.find(b"<table:table ")
    if start < 0:
        raise bounds.reject("the spreadsheet has no sheet")
    name = re.search(rb'table:name="([^"]*)"', content[start : start + 4096])
    _scan_ods_sheet(content[start:].decode("utf-8", errors="replace"))
    return _unescape(name.group(1).decode()) if name else ""


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
        raise bounds.header_not_in_row_1(first["row_start"])
    formulas = valued.filter(pl.col("formula_column").is_not_null())
    if not formulas.is_empty():
        hit = formulas.row(0, named=True)
        cell = f"{_letters(hit['formula_column'])}{hit['row_start']}"
        raise bounds.reject(
            f"cell {cell} of the first sheet {bounds.FORMULA}",
            line=hit["row_start"],
        )
    rows = int(valued["row_end"].max())  # type: ignore[arg-type]
    columns = int(valued["last_column"].max())  # type: ignore[arg-type]
    bounds.check_grid(rows, columns, 0)


def _letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters
