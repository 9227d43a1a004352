"""What every kind does to a chunk of rows before its rules: the same for each kind."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from worker.intake.readers import Table


def prepare(frame: pl.DataFrame, names: Sequence[str], keep: Sequence[str] = ()) -> pl.DataFrame:
    """The kind's columns (``names``) trimmed, blanks as null, missing ones added as null;
    rows blank in every one of them dropped (a spreadsheet's trailing empty rows)."""
    present = set(frame.columns)
    return frame.select(
        "line_number",
        *keep,
        *[
            (
                pl.col(name).str.strip_chars().replace("", None)
                if name in present
                else pl.lit(None, pl.String)
            ).alias(name)
            for name in names
        ],
    ).filter(~pl.all_horizontal(pl.col(list(names)).is_null()))


def unknown_columns(table: Table, names: Sequence[str]) -> list[str]:
    """The table's columns that are not the kind's: ignored, and named in its reports."""
    known = set(names)
    return [c for c in table.columns if c not in known and c != "line_number"]
