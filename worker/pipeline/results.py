"""Result files for the ERP: written whole under a hidden temp name, then renamed.

CSV results are UTF-8 without BOM, comma-separated, RFC 4180 quoted, and a
text cell that a spreadsheet would run as a formula is prefixed with ``'``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from worker.intake.names import NAME_MAX, safe_stem

FORMULA_START = r"^[=+\-@\t\r]"

INVOICE_RESULT_COLUMNS = (
    "line_number",
    "merchant_reference",
    "status",
    "errors",
    "invoice_number",
    "payment_link_url",
    "amount",
    "currency",
)


def formula_safe(expr: pl.Expr) -> pl.Expr:
    """Prefix ``'`` to text a spreadsheet would evaluate (OWASP CSV injection)."""
    return pl.when(expr.str.contains(FORMULA_START)).then(pl.lit("'") + expr).otherwise(expr)


def formula_safe_text(text: str) -> str:
    return "'" + text if re.match(FORMULA_START, text) else text


RESULT_SUFFIXES = (".results.csv", ".results.json", ".error.json")


def result_stem(folder: Path, name: str, file_id: int, taken: Callable[[str], bool]) -> str:
    """The stem every result of a file shares: ``<name>``, or ``<name>.<id>`` when an
    earlier file's result already has it. Chosen once per file and recorded."""
    reserve = len(f".{file_id}") + max(len(s) for s in RESULT_SUFFIXES)
    stem = safe_stem(name, reserve)
    if not taken(stem) and not any((folder / (stem + s)).exists() for s in RESULT_SUFFIXES):
        return stem
    return f"{stem}.{file_id}"


@contextlib.contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a hidden temp file beside ``target``; fsync and rename only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name[: NAME_MAX - 5]}.tmp")
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def invoice_result_rows(
    chunk: pl.DataFrame, number_base: int | None, link_base: str, late: pl.DataFrame | None
) -> pl.DataFrame:
    """One result line per row of a validated chunk, in input order."""
    frame = chunk
    if late is not None and not late.is_empty():
        frame = frame.join(late, on="line_number", how="left").with_columns(
            valid=pl.col("valid") & pl.col("code").is_null(),
            errors=pl.when(pl.col("code").is_not_null())
            .then(pl.col("code") + "(merchant_reference)")
            .otherwise(pl.col("errors")),
        )
    created = pl.col("valid") & pl.lit(number_base is not None)
    return frame.select(
        "line_number",
        formula_safe(pl.col("merchant_reference")).alias("merchant_reference"),
        pl.when(created).then(pl.lit("CREATED")).otherwise(pl.lit("REJECTED")).alias("status"),
        pl.col("errors").replace("", None),
        pl.when(created).then(pl.col("ordinal") + (number_base or 0)).alias("invoice_number"),
        pl.when(created)
        .then(pl.lit(link_base.rstrip("/") + "/") + pl.col("token"))
        .alias("payment_link_url"),
        formula_safe(
            pl.when(pl.col("valid"))
            .then(pl.col("amount").cast(pl.String))
            .otherwise(pl.col("amount_text"))
        ).alias("amount"),
        formula_safe(
            pl.when(pl.col("valid")).then(pl.col("currency")).otherwise(pl.col("currency_text"))
        ).alias("currency"),
    )


def write_csv_frames(target: Path, frames: Iterable[pl.DataFrame], columns: Iterable[str]) -> None:
    """Frames appended under one header, atomically."""
    columns = list(columns)
    with atomic_file(target, "wb") as fh:
        fh.write((",".join(columns) + "\r\n").encode())
        for frame in frames:
            frame.select(columns).write_csv(fh, include_header=False, line_terminator="\r\n")


def write_json(target: Path, doc: Any) -> None:
    with atomic_file(target) as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def error_doc(file_name: str, code: str, message: str, line: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"file": file_name, "code": code, "message": message}
    if line is not None:
        doc["line"] = line
    return doc
